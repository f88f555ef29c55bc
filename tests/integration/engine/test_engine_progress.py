"""Progress lines (issue 9, item 14): on a terminal, long commands show one line on stderr rewritten in
place; piped, or with --json, nothing. Real subprocesses with a pseudo-terminal as stderr."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from cbr_agent.backup.prescan import Prescan
from cbr_agent.pathrules import ExcludeMatcher
from tests.integration.engine.treeutil import random_bytes, write
from tests.integration.ptyrun import run_cli

#: many ticks even on a short run (the production pace is 4 a second)
FAST = {"CBR_AGENT_TEST_PROGRESS_SECONDS": "0.005"}


def _tree(root: Path) -> Path:
    for d in range(8):
        for i in range(60):
            write(root / f"d{d}" / f"f{i}", random_bytes(40_000, d * 100 + i))
    return root


def _env(engine) -> dict[str, str]:
    return {**engine.env(), **FAST, "PYTHONPATH": str(Path(__file__).resolve().parents[3])}


def _lines(terminal: str) -> list[str]:
    """The successive states of the progress line (each starts with a carriage return)."""
    return [part.strip() for part in terminal.split("\r") if part.strip()]


def test_backup_shows_total_percentage_and_eta_on_a_terminal_only(engine, tmp_path: Path) -> None:
    src = _tree(tmp_path / "src")
    shown = run_cli(["backup", str(src)], env=_env(engine))
    assert shown.returncode == 0, shown.terminal
    states = _lines(shown.terminal)
    with_total = [s for s in states if re.search(r"\d+\.\d% \d+/480 files, .*/18\.3 MiB", s)]
    assert with_total, states  # the pre-scan's total: 480 files of 40,000 bytes
    assert any("ETA" in s for s in with_total), states
    assert states[-1].startswith("[") and "100.0% 480/480 files" in states[-1]
    assert shown.terminal.endswith("\r"), "the line is cleared at the end"
    assert "stored" in shown.stdout and "after compression" in shown.stdout
    # piped: nothing but the closing line and no carriage return anywhere
    write(src / "new", b"more")
    piped = run_cli(["backup", str(src)], env=_env(engine), stderr_tty=False)
    assert piped.returncode == 0 and piped.stderr == "" and "\r" not in piped.stdout
    # --json on a terminal: the JSON alone, no progress line on the terminal
    write(src / "newer", b"more")
    as_json = run_cli(["backup", str(src), "--json"], env=_env(engine))
    assert as_json.returncode == 0 and as_json.terminal == ""
    assert json.loads(as_json.stdout)["files_new"] == 1


def test_restore_check_and_prune_show_progress_on_a_terminal(engine, tmp_path: Path) -> None:
    src = _tree(tmp_path / "src")
    assert engine.cli("backup", str(src)).returncode == 0
    restore = run_cli(["restore", "latest", "--target", str(tmp_path / "out")], env=_env(engine))
    assert restore.returncode == 0, restore.terminal
    assert any(re.search(r"restoring: \d+\.\d% \d+/480 files", s) for s in _lines(restore.terminal))
    assert "restored 480 files" in restore.stdout

    check = run_cli(["check", "--read-data"], env=_env(engine))
    assert check.returncode == 0, check.terminal
    states = _lines(check.terminal)
    reading = re.compile(r"reading packs: \d+\.\d% \d+/\d+ packs, [\d.]+ \w+/18\.\d MiB")
    assert any(reading.search(s) for s in states), states
    assert "checking snapshots" in states[-1]

    (src / "d0").rename(tmp_path / "moved")  # a second snapshot without d0, then forget the first
    assert engine.cli("backup", str(src)).returncode == 0
    assert engine.cli("forget", "--keep-last", "1").returncode == 0
    prune = run_cli(["prune"], env=_env(engine))
    assert prune.returncode == 0, prune.terminal
    states = _lines(prune.terminal)
    assert states[-1].startswith("[0:") and "deleting packs: 100.0%" in states[-1], states

    for args in (["check", "--read-data"], ["restore", "latest", "--target", str(tmp_path / "o2")]):
        piped = run_cli(args, env=_env(engine), stderr_tty=False)
        assert piped.returncode == 0 and piped.stderr == "", piped.stderr


def test_prescan_counts_what_the_backup_will_see(tmp_path: Path) -> None:
    root = tmp_path / "root"
    write(root / "a" / "one", b"x" * 10)
    write(root / "a" / "skip.tmp", b"x" * 1000)
    write(root / "b" / "two", b"y" * 20)
    write(root / "cache" / "big", b"z" * 5000)
    os.symlink("/etc", root / "link")  # never followed
    os.mkfifo(root / "fifo")
    write(tmp_path / "single", b"s" * 7)
    scan = Prescan([(str(root), ExcludeMatcher(str(root), ["*.tmp", str(root / "cache")])),
                    (str(tmp_path / "single"), ExcludeMatcher(str(tmp_path / "single"), []))],
                   one_file_system=True)
    scan.run()
    assert scan.done and (scan.files, scan.bytes) == (3, 37)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to bind-mount a loop")
def test_prescan_does_not_loop_on_a_bind_mount_of_a_parent(tmp_path: Path) -> None:
    import subprocess

    root = tmp_path / "root"
    write(root / "f", b"1234")
    (root / "loop").mkdir()
    if subprocess.run(["mount", "--bind", str(root), str(root / "loop")]).returncode:
        pytest.skip("cannot bind-mount here")
    try:
        scan = Prescan([(str(root), ExcludeMatcher(str(root), []))], one_file_system=False)
        scan.run()
        assert scan.done and scan.files >= 1
    finally:
        subprocess.run(["umount", str(root / "loop")])


def test_diff_dump_and_restore_verify_show_progress_on_a_terminal(engine, tmp_path: Path) -> None:
    src = _tree(tmp_path / "src")
    assert engine.cli("backup", str(src)).returncode == 0
    write(src / "d3" / "f7", b"changed")
    assert engine.cli("backup", str(src)).returncode == 0

    diff = run_cli(["diff", _nth(engine, 0), _nth(engine, 1)], env=_env(engine))
    assert diff.returncode == 0, diff.terminal
    assert any(re.search(r"\d+ director(y|ies) compared", s) for s in _lines(diff.terminal)), diff.terminal
    assert f"M    {src}/d3/f7" in diff.stdout and "compared" not in diff.stdout

    # dump: the totals come from the directory node (480 files, the changed one 7 bytes)
    dump = run_cli(["dump", "latest", str(src)], env=_env(engine))
    assert dump.returncode == 0, dump.terminal
    states = _lines(dump.terminal)
    assert any(re.search(r"dumping: \d+\.\d% \d+/480 files, .*/18\.3 MiB", s) for s in states), states
    assert "100.0% 480/480 files" in states[-1] and dump.terminal.endswith("\r")

    restore = run_cli(["restore", "latest", "--target", str(tmp_path / "out"), "--verify"], env=_env(engine))
    assert restore.returncode == 0, restore.terminal
    states = _lines(restore.terminal)
    assert any(re.search(r"verifying: \d+\.\d% \d+/480 files", s) for s in states), states
    assert "verified 480 files" in restore.stdout and "all match" in restore.stdout

    for args in (["diff", _nth(engine, 0), _nth(engine, 1)], ["dump", "latest", str(src)],
                 ["restore", "latest", "--target", str(tmp_path / "o2"), "--verify"]):
        piped = run_cli(args, env=_env(engine), stderr_tty=False)
        assert piped.returncode == 0 and piped.stderr == "", piped.stderr
    as_json = run_cli(["diff", _nth(engine, 0), _nth(engine, 1), "--json"], env=_env(engine))
    assert as_json.returncode == 0 and as_json.terminal == ""


def _nth(engine, n: int) -> str:
    """The id of the n-th snapshot, oldest first."""
    snaps = json.loads(engine.cli("snapshots", "--json").stdout)
    return sorted(snaps, key=lambda s: s["time"])[n]["id"]
