"""The agent id: generated once, kept with the machine id, replaced when the machine id changes."""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path

import pytest

from cbr_agent.agent.identity import IDENTITY_FILE, load_identity, peek_agent_id, read_machine_id


def machine(tmp_path: Path, value: str) -> list[str]:
    path = tmp_path / "machine-id"
    path.write_text(value + "\n")
    return [str(path)]


def test_generated_once_and_kept(tmp_path: Path) -> None:
    ids = machine(tmp_path, "a" * 32)
    first = load_identity(tmp_path / "state", machine_id_files=ids)
    assert first.reason == "new" and uuid.UUID(first.agent_id)
    again = load_identity(tmp_path / "state", machine_id_files=ids)
    assert again.agent_id == first.agent_id and again.reason == "stored"
    assert peek_agent_id(tmp_path / "state") == first.agent_id


def test_changed_machine_id_gets_a_new_id_and_says_why(tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    first = load_identity(tmp_path / "s", machine_id_files=machine(tmp_path, "a" * 32))
    with caplog.at_level(logging.WARNING):
        cloned = load_identity(tmp_path / "s", machine_id_files=machine(tmp_path, "b" * 32))
    assert cloned.agent_id != first.agent_id and cloned.reason == "machine-id-changed"
    assert "machine id changed" in caplog.text and first.agent_id in caplog.text
    assert "a" * 32 not in caplog.text  # the machine id itself stays confidential
    stored = json.loads((tmp_path / "s" / IDENTITY_FILE).read_text())
    assert stored["agent_id"] == cloned.agent_id and "b" * 32 not in json.dumps(stored)


def test_pinned_id_wins_and_is_remembered(tmp_path: Path) -> None:
    ids = machine(tmp_path, "c" * 32)
    load_identity(tmp_path / "s", machine_id_files=ids)
    pinned = str(uuid.uuid4())
    assert load_identity(tmp_path / "s", pinned=pinned, machine_id_files=ids).agent_id == pinned
    assert load_identity(tmp_path / "s", machine_id_files=ids).agent_id == pinned


def test_no_machine_id_keeps_a_stable_id(tmp_path: Path) -> None:
    first = load_identity(tmp_path / "s", machine_id_files=[str(tmp_path / "absent")])
    assert first.machine_id is None
    assert load_identity(tmp_path / "s", machine_id_files=[]).agent_id == first.agent_id


@pytest.mark.parametrize("content", ["{not json", "[]", '{"agent_id": "nope"}'])
def test_damaged_identity_file_is_set_aside_not_a_crash(tmp_path: Path, content: str) -> None:
    state = tmp_path / "s"
    state.mkdir()
    (state / IDENTITY_FILE).write_text(content)
    identity = load_identity(state, machine_id_files=[])
    assert uuid.UUID(identity.agent_id)
    assert (state / (IDENTITY_FILE + ".corrupt")).read_text() == content


def test_machine_id_fallback_order(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("uninitialized\n")
    second = tmp_path / "dbus"
    second.write_text("d" * 32)
    assert read_machine_id([str(tmp_path / "missing"), str(empty), str(second)]) == \
        read_machine_id([str(second)])
    assert read_machine_id([str(tmp_path / "missing")]) is None
