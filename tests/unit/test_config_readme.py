"""The README's table of configuration keys is the table in cbr_agent.config.KEYS."""

from __future__ import annotations

import re
from pathlib import Path

from cbr_agent.config import KEYS

README = Path(__file__).resolve().parents[2] / "README.md"


def key_rows() -> dict[str, list[str]]:
    text = README.read_text(encoding="utf-8")
    table = text.split("<!-- config-keys:", 1)[1].split("<!-- end config-keys -->", 1)[0]
    rows: dict[str, list[str]] = {}
    for line in table.splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        if cells and cells[0].startswith("`"):
            rows[cells[0].strip("`")] = cells
    return rows


def test_every_key_is_in_the_readme_with_its_variable_and_default() -> None:
    rows = key_rows()
    assert set(rows) == {k.name for k in KEYS}
    for key in KEYS:
        _, env, default, meaning = rows[key.name]
        assert env == f"`CBR_AGENT_{key.name.upper()}`"
        if key.default is None:
            assert default == "unset" or key.name in ("state_dir", "repository")
        elif isinstance(key.default, bool):
            assert default == f"`{str(key.default).lower()}`"
        elif isinstance(key.default, float):
            assert default == f"`{key.default:g}`"
        elif key.default:
            assert default == f"`{key.default}`"
        assert meaning.startswith(key.doc.replace("|", "\\|")[:40])
