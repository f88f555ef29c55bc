"""The console is a client of the API: no module of it reads the store, the validation or the
credentials' secrets directly (the one code path to the data is the API)."""

from __future__ import annotations

import ast
from pathlib import Path

import cbr_agent.controlplane.console as console

FORBIDDEN = ("cbr_agent.controlplane.store", "cbr_agent.controlplane.validation",
             "cbr_agent.controlplane.embedded", "sqlite3")


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_no_console_module_reaches_the_store() -> None:
    files = sorted(Path(console.__file__).parent.glob("*.py"))
    assert len(files) >= 4
    for path in files:
        bad = {m for m in imported_modules(path) if m.startswith(FORBIDDEN)}
        assert not bad, f"{path.name} imports {bad}: the console must go through the API"
