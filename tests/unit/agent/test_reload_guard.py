"""Which reloads the daemon refuses (cbr_agent.agent.reloadguard), on real config files."""

from __future__ import annotations

from pathlib import Path

import pytest

from cbr_agent.agent.reloadguard import identity_changes, refusal
from cbr_agent.config import load_settings

AGENT = "489654f2-363b-4ebf-966a-bdf079d97114"
OTHER = "0b6f4b0e-6f0c-4a4e-9a53-3f3e2b1c5d7e"
BASE = 'endpoint = "https://cbr.example.test"\nproject_id = "p1"\nbackup_schedule = "6h"\n'


def settings(tmp_path: Path, text: str):
    config = tmp_path / "agent.toml"
    config.write_text(text)
    return load_settings(config_file=config, environ={"CBR_AGENT_STATE_DIR": str(tmp_path / "state")})


@pytest.mark.parametrize(("new", "reason"), [
    ("", "has no settings at all"),
    ("# only a comment\n", "has no settings at all"),
    ('project_id = "p1"\nbackup_schedule = "6h"\n', "endpoint https://cbr.example.test -> embedded"),
    (BASE.replace("p1", "p2"), "project_id p1 -> p2"),
    (BASE.replace("cbr.example", "other.example"), "endpoint https://cbr.example.test -> https://other"),
    (BASE + f'agent_id = "{OTHER}"\n', f"agent_id {AGENT} -> {OTHER}"),
])
def test_refused(tmp_path: Path, new: str, reason: str) -> None:
    old = settings(tmp_path, BASE)
    got = refusal(old, settings(tmp_path, new), AGENT)
    assert got is not None and reason in got, got


@pytest.mark.parametrize("new", [
    BASE,
    BASE.replace('"6h"', '"1h"') + 'host_nickname = "web-1"\n',
    BASE + f'agent_id = "{AGENT}"\n',  # pinning the id it already has
    BASE.replace("p1", "p2") + "allow_reload_identity_change = true\n",
    "allow_reload_identity_change = true\n",
])
def test_accepted(tmp_path: Path, new: str) -> None:
    old = settings(tmp_path, BASE)
    assert refusal(old, settings(tmp_path, new), AGENT) is None


def test_an_empty_file_that_changes_nothing_is_accepted(tmp_path: Path) -> None:
    old = settings(tmp_path, "")
    assert refusal(old, settings(tmp_path, "\n"), AGENT) is None
    assert identity_changes(old, settings(tmp_path, ""), AGENT) == []
