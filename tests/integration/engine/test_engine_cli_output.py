"""What the engine commands tell people (issue 9, items 11 and 12): restore --path relative to the
current directory, counts of what was really restored, one short snapshot id (full in --json, any unique
prefix accepted), plurals, forget --keep-last 0, and the closing line of a backup. Real subprocesses."""

from __future__ import annotations

import json
import re
from pathlib import Path

from cbr_agent.backup.run import backup_paths
from tests.integration.engine.test_engine_corruption import flip_byte_of_blob
from tests.integration.engine.treeutil import random_bytes, write

#: a snapshot id as people see it, not followed by more hex
SHORT = re.compile(r"\b[0-9a-f]{8}\b")
LONG_HEX = re.compile(r"[0-9a-f]{9,}")


def test_restore_path_relative_to_the_current_directory(engine, tmp_path: Path) -> None:
    src = tmp_path / "src"
    write(src / "sub" / "wanted", b"wanted")
    write(src / "other", b"other")
    backup_paths(engine.settings(), [str(src)])
    proc = engine.cli("restore", "latest", "--path", "src/sub", "--target", str(tmp_path / "out"),
                      cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert f"taken as {src / 'sub'}" in proc.stderr
    out = tmp_path / "out" / str(src).lstrip("/")
    assert (out / "sub" / "wanted").read_bytes() == b"wanted"
    assert not (out / "other").exists()


def test_restore_counts_only_what_it_restored(engine, tmp_path: Path) -> None:
    src = tmp_path / "src"
    write(src / "good-1.bin", random_bytes(30_000, 1))
    write(src / "victim.bin", random_bytes(3_000, 2))
    write(src / "good-2.txt", b"fine\n" * 100)
    backup_paths(engine.settings(), [str(src)])
    repo = engine.open()
    flip_byte_of_blob(engine.repo_path, repo, repo.blob_id((src / "victim.bin").read_bytes()))
    proc = engine.cli("restore", "latest", "--target", str(tmp_path / "out"))
    assert proc.returncode == 1
    assert "restored 2 files," in proc.stdout and "1 file not restored" in proc.stdout
    assert "1 entry could not be restored" in proc.stderr
    proc = engine.cli("restore", "latest", "--target", str(tmp_path / "out2"), "--json")
    summary = json.loads(proc.stdout)
    assert summary["files"] == 2 and summary["files_failed"] == 1
    assert summary["bytes_written"] == 30_000 + 500


def test_one_short_id_for_people_the_full_one_in_json(engine, tmp_path: Path) -> None:
    src = tmp_path / "src"
    write(src / "only", b"one file")
    backup = engine.cli("backup", str(src))
    assert backup.returncode == 0
    assert ": 1 file (1 new, 0 changed, 0 unchanged)" in backup.stdout
    assert "stored" in backup.stdout and "after compression" in backup.stdout
    full = json.loads(engine.cli("snapshots", "--json").stdout)[0]["id"]
    assert len(full) == 64
    short = full[:8]
    for args in (("snapshots",), ("restore", short, "--target", str(tmp_path / "o"), "--dry-run"),
                 ("forget", "--keep-last", "1", "--dry-run")):
        proc = engine.cli(*args)
        assert proc.returncode == 0, proc.stderr
        if args[0] != "forget":
            assert short in proc.stdout, proc.stdout
        assert not LONG_HEX.search(proc.stdout), (args, proc.stdout)
    assert f"snapshot {short} saved" in backup.stdout and not LONG_HEX.search(backup.stdout)
    # any unique prefix is accepted where a snapshot is taken
    for prefix in (full[:4], short, full[:20], full):
        assert engine.cli("ls", prefix).returncode == 0
    restored = json.loads(engine.cli("restore", short, "--target", str(tmp_path / "o2"), "--json").stdout)
    assert restored["snapshot_id"] == full


def test_plurals(engine, tmp_path: Path) -> None:
    src = tmp_path / "src"
    write(src / "only", b"one file")
    backup_paths(engine.settings(), [str(src)])
    check = engine.cli("check")
    assert "checked 1 snapshot," in check.stdout and "1 snapshots" not in check.stdout
    restore = engine.cli("restore", "latest", "--target", str(tmp_path / "o"))
    assert "restored 1 file," in restore.stdout
    forget = engine.cli("forget", "--keep-last", "1")
    assert "kept 1 snapshot," in forget.stdout


def test_forget_keep_last_0_is_refused_as_keeping_nothing(engine, tmp_path: Path) -> None:
    write(tmp_path / "src" / "f", b"x")
    backup_paths(engine.settings(), [str(tmp_path / "src")])
    proc = engine.cli("forget", "--keep-last", "0")
    assert proc.returncode == 2
    assert "no --keep-* option given" not in proc.stderr
    assert "--keep-last 0 keeps no snapshot" in proc.stderr
    assert len(engine.open().list_snapshots()) == 1
    # 0 next to another rule is fine: the other rule keeps
    assert engine.cli("forget", "--keep-last", "0", "--keep-daily", "1").returncode == 0
    assert len(engine.open().list_snapshots()) == 1
    nothing = engine.cli("forget")
    assert nothing.returncode == 2 and "no --keep-* option given" in nothing.stderr
    assert "see 'cbr-agent forget --help'" in nothing.stderr  # the command's help, not the top-level
