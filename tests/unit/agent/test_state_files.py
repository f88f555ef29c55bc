"""State dir files: atomic writes, damaged files recovered, failures as one-line StateErrors, pid lock."""

from __future__ import annotations

import errno
import multiprocessing
import os
import stat
from pathlib import Path

import pytest

from cbr_agent.agent import statefile
from cbr_agent.agent.state import (
    PATHS_FILE,
    PidLock,
    load_agent_state,
    load_paths,
    load_paths_or_recover,
    running_pid,
    save_paths,
    update_agent_state,
)
from cbr_agent.agent.statefile import CorruptStateFile, read_json, write_json
from cbr_agent.api.models import AgentPath
from cbr_agent.errors import StateError


def test_write_json_is_atomic_and_keeps_mode(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "x.json"
    write_json(target, {"a": 1}, mode=0o600)
    assert read_json(target) == {"a": 1}
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    write_json(target, {"a": 2}, mode=0o600)
    assert read_json(target) == {"a": 2}
    assert [p.name for p in target.parent.iterdir()] == ["x.json"]  # no temp files left


def test_paths_with_surrogates_and_spaces_round_trip(tmp_path: Path) -> None:
    name = "/data/" + os.fsdecode(b"caf\xe9 r\xc3\xa9sum\xc3\xa9")
    paths = (AgentPath(name, ("*.tmp", "with space")),)
    save_paths(tmp_path, "agent-1", paths)
    cache = load_paths(tmp_path)
    assert cache is not None and cache.paths[0].dir_path == name
    assert cache.paths[0].excludes == ("*.tmp", "with space") and cache.agent_id == "agent-1"


@pytest.mark.parametrize("content", [b"{broken", b"[1, 2]", b'{"paths": 3}', b'{"paths": [{"x": 1}]}'])
def test_damaged_path_cache_is_set_aside_and_reported_missing(tmp_path: Path, content: bytes) -> None:
    (tmp_path / PATHS_FILE).write_bytes(content)
    with pytest.raises(CorruptStateFile):
        load_paths(tmp_path)
    assert load_paths_or_recover(tmp_path) is None
    assert (tmp_path / (PATHS_FILE + ".corrupt")).read_bytes() == content
    assert not (tmp_path / PATHS_FILE).exists()


def test_unwritable_state_dir_is_a_state_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StateError, match="cannot create state directory") as caught:
        save_paths(blocker / "state", "a", ())
    assert "\n" not in str(caught.value)


def test_full_disk_is_a_state_error_and_leaves_the_old_file(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "x.json"
    write_json(target, {"old": True})

    def full(fd: int, data: bytes) -> int:  # a failing disk: the one fake these tests need
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(statefile.os, "write", full)
    with pytest.raises(StateError, match=r"No space left on device.*not full"):
        write_json(target, {"new": True})
    monkeypatch.undo()
    assert read_json(target) == {"old": True}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_agent_state_merges_changes(tmp_path: Path) -> None:
    update_agent_state(tmp_path, {"a": 1, "b": 1})
    update_agent_state(tmp_path, {"b": 2})
    assert load_agent_state(tmp_path) == {"a": 1, "b": 2}
    (tmp_path / "agent-state.json").write_text("garbage")
    assert load_agent_state(tmp_path) == {}
    assert update_agent_state(tmp_path, {"c": 3}) == {"c": 3}


def _hold_lock(state_dir: str, ready, release) -> None:  # runs in a child process
    with PidLock(Path(state_dir)):
        ready.set()
        release.wait(10)


def test_pid_lock_tells_running_from_stale(tmp_path: Path) -> None:
    assert running_pid(tmp_path) is None
    (tmp_path / "daemon.pid").write_text("999999\n")  # stale: nobody holds the lock
    assert running_pid(tmp_path) is None
    ctx = multiprocessing.get_context("fork")
    ready, release = ctx.Event(), ctx.Event()
    child = ctx.Process(target=_hold_lock, args=(str(tmp_path), ready, release))
    child.start()
    try:
        assert ready.wait(10)
        assert running_pid(tmp_path) == child.pid
        with pytest.raises(StateError, match=f"pid {child.pid}.*is running"):
            PidLock(tmp_path).acquire()
    finally:
        release.set()
        child.join(10)
    assert running_pid(tmp_path) is None
    with PidLock(tmp_path):
        assert running_pid(tmp_path) == os.getpid()
