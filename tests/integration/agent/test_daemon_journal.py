"""The file change journal in the real daemon (subprocess) and with the real engine: scheduled backups scan
only what changed, and fall back to a full scan whenever the journal cannot vouch for a path."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from cbr_agent.agent.journal import Journal
from cbr_agent.backup.run import RunOptions, backup_paths
from cbr_agent.config import load_settings
from tests.integration.agent.conftest import server_env, wait_for

#: a small tree: the root, 3 directories with 2 subdirectories each
TREE_DIRS = 1 + 3 + 6


def make_tree(root: Path) -> None:
    for top in "abc":
        for sub in ("0", "1"):
            d = root / top / sub
            d.mkdir(parents=True)
            (d / "f").write_bytes(f"{top}/{sub}".encode() * 50)


def daemon_env(cp_server: Any, **extra: str) -> dict[str, str]:
    return {**server_env(cp_server, heartbeat=0.5), "CBR_AGENT_BACKUP_SCHEDULE": "1s",
            "CBR_AGENT_INSECURE_TEST_KDF": "1", **extra}


def next_backup(host: Any, after: str | None, timeout: float = 30.0) -> dict[str, Any]:
    """The first finished scheduled backup with another snapshot than ``after``."""
    def done() -> dict[str, Any] | None:
        last = host.state_json().get("last_backup") or {}
        if last.get("snapshot_id") and last["snapshot_id"] != after:
            return last
        if last.get("status") == "failed":
            raise AssertionError(f"backup failed: {last}\n{host.log_text()}")
        return None

    return wait_for(done, timeout=timeout, what="a scheduled backup")


def has_open(pid: int, path: Path) -> bool:
    """Whether process ``pid`` has ``path`` open right now (a backup reading it)."""
    base = f"/proc/{pid}/fd"
    try:
        fds = os.listdir(base)
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(os.path.join(base, fd)) == str(path):
                return True
        except OSError:
            continue
    return False


def restored(host: Any, snapshot: str, target: Path) -> Path:
    result = host.cli("restore", snapshot, "--target", str(target))
    assert result.returncode == 0, result.stderr
    return target


def test_scheduled_backups_scan_only_changes_and_a_restart_scans_fully(cp_server, agent_host_factory,
                                                                       tmp_path: Path) -> None:
    data = tmp_path / "data"
    make_tree(data)
    host = agent_host_factory(daemon_env(cp_server))
    assert host.cli("path", "add", str(data)).returncode == 0
    host.start()
    first = next_backup(host, None)
    assert first["scan"] == "full" and first["summary"]["dirs_scanned"] == TREE_DIRS

    # the watches are set up in the background: until the first backup after they are in place is
    # done, backups scan fully (one or two of them)
    unchanged = next_backup(host, first["snapshot_id"])
    for _ in range(2):
        if unchanged["scan"] == "journal":
            break
        unchanged = next_backup(host, unchanged["snapshot_id"])
    assert unchanged["scan"] == "journal", unchanged
    assert unchanged["summary"]["dirs_scanned"] == 0 and unchanged["summary"]["dirs_reused"] == 3
    assert unchanged["summary"]["bytes_read"] == 0

    (data / "b" / "1" / "f").write_bytes(b"changed under the daemon")
    (data / "c" / "new").mkdir()
    (data / "c" / "new" / "g").write_bytes(b"a new directory")
    seen = [next_backup(host, unchanged["snapshot_id"])]
    seen.append(next_backup(host, seen[-1]["snapshot_id"]))
    assert all(b["scan"] == "journal" for b in seen), seen
    scanned = [b["summary"]["dirs_scanned"] for b in seen]
    assert 0 < max(scanned) < TREE_DIRS, scanned  # b/1, c and c/new, not the rest
    out = restored(host, seen[-1]["snapshot_id"], tmp_path / "out") / str(data).lstrip("/")
    assert (out / "b" / "1" / "f").read_bytes() == b"changed under the daemon"
    assert (out / "c" / "new" / "g").read_bytes() == b"a new directory"
    assert (out / "a" / "0" / "f").read_bytes() == b"a/0" * 50

    # b/1 again: its previous nodes come from the listing the daemon kept from the backup that edited it
    (data / "b" / "1" / "f").write_bytes(b"changed again")
    (data / "b" / "1" / "h").write_bytes(b"came later")
    again = [next_backup(host, seen[-1]["snapshot_id"])]  # (a backup may start between the two writes)
    again.append(next_backup(host, again[-1]["snapshot_id"]))
    assert all(b["scan"] == "journal" for b in again), again
    out = restored(host, again[-1]["snapshot_id"], tmp_path / "again") / str(data).lstrip("/")
    assert sorted(p.name for p in (out / "b" / "1").iterdir()) == ["f", "h"]
    assert (out / "b" / "1" / "f").read_bytes() == b"changed again"
    assert (out / "b" / "1" / "h").read_bytes() == b"came later"
    assert (out / "c" / "new" / "g").read_bytes() == b"a new directory"

    report = json.loads(host.cli("status", "--json").stdout)
    last = report["last_backup"]
    assert last["scan"] in ("journal", "full") and isinstance(last["duration"], float)
    assert report["journal"]["watching"] is True and report["journal"]["paths"] == 1
    human = host.cli("status").stdout
    assert "scan" in human and " s, " in human and "change journal:" in human, human
    assert "watching 1 path(s)" in human, human

    code, _ = host.stop()
    assert code == 0
    host.start()
    after_restart = next_backup(host, host.state_json()["last_backup"].get("snapshot_id"))
    assert after_restart["scan"] == "full", "a restarted daemon knows nothing of what changed meanwhile"
    assert after_restart["summary"]["dirs_scanned"] == TREE_DIRS + 1


def test_full_scan_interval_forces_a_full_scan(cp_server, agent_host_factory, tmp_path: Path) -> None:
    data = tmp_path / "data"
    make_tree(data)
    host = agent_host_factory(daemon_env(cp_server, CBR_AGENT_FULL_SCAN_INTERVAL="3"))
    assert host.cli("path", "add", str(data)).returncode == 0
    host.start()
    scans = [next_backup(host, None)]
    def journal_then_full() -> bool:
        kinds = [b["scan"] for b in scans]
        return "journal" in kinds and kinds[-1] == "full"

    while len(scans) < 10 and not journal_then_full():
        scans.append(next_backup(host, scans[-1]["snapshot_id"]))
    kinds = [b["scan"] for b in scans]
    assert kinds[0] == "full" and journal_then_full(), kinds


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="watches the daemon's open files in /proc")
def test_a_file_changed_while_backed_up_has_its_final_content_in_the_next_backup(
        cp_server, agent_host_factory, tmp_path: Path) -> None:
    data = tmp_path / "data"
    make_tree(data)
    big = data / "a" / "big.bin"
    big.write_bytes(os.urandom(1024))
    host = agent_host_factory(daemon_env(cp_server))
    assert host.cli("path", "add", str(data)).returncode == 0
    host.start()
    first = next_backup(host, None)
    big.write_bytes(os.urandom(48 * 1024 * 1024))  # long enough to read that we change it meanwhile
    pid = host.daemon.pid
    deadline = time.monotonic() + 20
    while not has_open(pid, big):
        assert time.monotonic() < deadline, "the daemon never read big.bin"
        time.sleep(0.002)
    final = os.urandom(64 * 1024)
    with open(big, "r+b") as fh:  # in place, as an editor or a database would
        fh.write(final)
        fh.truncate()
    during = next_backup(host, first["snapshot_id"])
    following = next_backup(host, during["snapshot_id"])
    assert during["summary"]["files_changed"] + during["summary"]["files_new"] >= 1, during
    out = restored(host, following["snapshot_id"], tmp_path / "out") / str(data).lstrip("/")
    assert (out / "a" / "big.bin").read_bytes() == final


@pytest.fixture
def engine_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    from cbr_agent.repository import Repository

    env = {"CBR_AGENT_PASSWORD": "journal test password", "CBR_AGENT_INSECURE_TEST_KDF": "1",
           "CBR_AGENT_REPOSITORY": str(tmp_path / "repo"), "CBR_AGENT_CONFIG": str(tmp_path / "none.toml")}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    (tmp_path / "none.toml").write_text("")
    Repository.init(str(tmp_path / "repo"), env["CBR_AGENT_PASSWORD"])
    return load_settings(overrides={"state_dir": str(tmp_path / "state")})


def test_an_event_queue_overflow_makes_the_next_backup_a_full_scan(engine_settings, tmp_path: Path) -> None:
    data = tmp_path / "data"
    make_tree(data)
    journal = Journal(3600.0)
    journal.start()
    try:
        journal.watch([(str(data), ())], wait=True)

        def scheduled() -> Any:
            """What the scheduler does around one backup."""
            summary = backup_paths(engine_settings, [str(data)], RunOptions(changes=journal.take()))
            journal.finished(summary.snapshot_id, summary.scan)
            return summary

        assert scheduled().scan == "full"
        quiet = scheduled()
        assert quiet.scan == "journal" and quiet.dirs_scanned == 0
        journal.on_overflow(str(data))
        after = scheduled()
        assert after.scan == "full" and after.dirs_scanned == TREE_DIRS
        assert scheduled().scan == "journal"
    finally:
        journal.stop()


def test_a_backup_that_fails_leaves_its_changes_for_the_next(engine_settings, tmp_path: Path) -> None:
    data = tmp_path / "data"
    make_tree(data)
    journal = Journal(3600.0)
    journal.start()
    try:
        journal.watch([(str(data), ())], wait=True)
        first = backup_paths(engine_settings, [str(data)], RunOptions(changes=journal.take()))
        journal.finished(first.snapshot_id, first.scan)
        (data / "a" / "1" / "f").write_bytes(b"changed")
        deadline = time.monotonic() + 5
        while str(data / "a" / "1") not in journal._dirty and time.monotonic() < deadline:
            time.sleep(0.02)
        cancel = threading.Event()
        cancel.set()
        with pytest.raises(Exception, match="cancel"):
            backup_paths(engine_settings, [str(data)], RunOptions(changes=journal.take(), cancel=cancel))
        journal.failed()
        again = backup_paths(engine_settings, [str(data)], RunOptions(changes=journal.take()))
        assert again.scan == "journal" and again.files_changed >= 1
    finally:
        journal.stop()


def test_a_cli_backup_in_between_makes_the_next_scheduled_one_a_full_scan(cp_server, agent_host_factory,
                                                                          tmp_path: Path) -> None:
    data = tmp_path / "data"
    make_tree(data)
    host = agent_host_factory(daemon_env(cp_server, CBR_AGENT_BACKUP_SCHEDULE="2s"))
    assert host.cli("path", "add", str(data)).returncode == 0
    host.start()
    last = next_backup(host, None)
    while last["scan"] != "journal":
        last = next_backup(host, last["snapshot_id"])
    (data / "a" / "cli-only").write_bytes(b"written just before a CLI backup")
    cli = host.cli("backup", "--json")  # the journal sees the change, but the parent is now this one
    assert cli.returncode == 0, cli.stderr
    cli_snapshot = json.loads(cli.stdout)["snapshot_id"]
    after = next_backup(host, last["snapshot_id"])
    if after["snapshot_id"] == cli_snapshot:  # (state shows the daemon's own backups only)
        after = next_backup(host, cli_snapshot)
    assert after["scan"] == "full", "the journal counts from the daemon's snapshot, not the CLI's"
    assert after["summary"]["parent"] == cli_snapshot
    assert after["summary"]["bytes_added"] == 0, "the kept repository saw the CLI backup's index"
    check = host.cli("check")
    assert check.returncode == 0, check.stderr
