"""A directory the restore makes in one that existed is filled under a temporary name and takes its real
name once everything below it is restored: nothing is seen under a real path half-written, the files
below it need no temporary names of their own, messages name the real paths, and a restore killed with
kill -9 leaves nothing under the real name."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cbr_agent.backup.run import backup_paths
from cbr_agent.restore.contents import ContentWriter
from cbr_agent.restore.restorer import Restorer, restore_snapshot
from tests.integration.engine.test_engine_corruption import flip_byte_of_blob
from tests.integration.engine.treeutil import assert_same_tree, build_tree, write


def _first_part(path: Path) -> str:
    return path.parts[1]  # "/tmp/.../src" is restored as TARGET/tmp/.../src


def test_a_new_directory_takes_its_name_when_complete(engine, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    src = build_tree(tmp_path / "src")  # hard links, a sparse file, a fifo, long names, xattrs
    backup_paths(engine.settings(), [str(src)])
    out = tmp_path / "out"
    out.mkdir()
    top = out / _first_part(src)
    written: list[tuple[str, str, bool]] = []
    write_ = ContentWriter.write

    def watching_write(self: ContentWriter, job, *args):
        written.append((job.tmp, job.final, top.exists()))
        return write_(self, job, *args)

    monkeypatch.setattr(ContentWriter, "write", watching_write)
    repo = engine.open()
    summary = restore_snapshot(repo, repo.find_snapshot("latest"), str(out))
    assert summary.errors == [] and summary.warnings == []
    assert written
    for tmp, final, top_in_place in written:
        assert not top_in_place                     # nothing under the real path while writing
        assert tmp == final and f"{out}/.cbr-restore-" in final  # its own name, in the hidden top
    assert_same_tree(src, out / str(src).lstrip("/"))
    assert os.listdir(out) == [_first_part(src)]   # no temporary name left


def test_a_missing_directory_in_a_tree_that_exists_is_restored_in_place(engine, tmp_path: Path) -> None:
    src = tmp_path / "src"
    write(src / "kept" / "a.txt", b"a" * 100)
    write(src / "lost" / "sub" / "b.txt", b"b" * 200)
    write(src / "c.txt", b"c")
    backup_paths(engine.settings(), [str(src)])
    before = os.lstat(src).st_mtime_ns
    (src / "lost" / "sub" / "b.txt").unlink()
    (src / "lost" / "sub").rmdir()
    (src / "lost").rmdir()
    (src / "kept" / "a.txt").write_bytes(b"changed")
    repo = engine.open()
    restorer = Restorer(repo, "/")
    summary = restorer.run(repo.find_snapshot("latest").tree, [str(src)])
    assert summary.errors == []
    assert (src / "lost" / "sub" / "b.txt").read_bytes() == b"b" * 200
    assert (src / "kept" / "a.txt").read_bytes() == b"a" * 100   # replaced (temporary name + rename)
    # the directory that existed got its metadata back after the new one was renamed into it
    assert os.lstat(src).st_mtime_ns == before
    assert sorted(p.name for p in src.iterdir()) == ["c.txt", "kept", "lost"]


def test_messages_name_the_real_path(engine, tmp_path: Path) -> None:
    src = tmp_path / "src"
    write(src / "d" / "victim.txt", b"v" * 3000)
    write(src / "d" / "fine.txt", b"f" * 3000)
    backup_paths(engine.settings(), [str(src)])
    repo = engine.open()
    from cbr_agent.repository import decode_tree

    def child(tree: str, name: str) -> dict:
        return next(n for n in decode_tree(repo.load_blob(bytes.fromhex(tree))) if n["name"] == name)

    tree = repo.find_snapshot("latest").tree
    for part in (*src.parts[1:], "d"):
        tree = child(tree, part)["subtree"]
    victim = child(tree, "victim.txt")
    flip_byte_of_blob(engine.repo_path, repo, bytes.fromhex(victim["content"][0]))
    out = tmp_path / "out"
    summary = restore_snapshot(engine.open(), repo.find_snapshot("latest"), str(out))
    real = out / str(src).lstrip("/") / "d"
    assert [e.split(": ", 1)[0] for e in summary.errors] == [str(real / "victim.txt")]
    assert (real / "fine.txt").read_bytes() == b"f" * 3000 and not (real / "victim.txt").exists()


def test_a_stopped_restore_says_where_its_data_is(engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    src = tmp_path / "src"
    write(src / "a.txt", b"a")
    backup_paths(engine.settings(), [str(src)])
    repo = engine.open()
    out = tmp_path / "out"

    def interrupted(self: Restorer) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(Restorer, "_finish_links", interrupted)
    with caplog.at_level(logging.WARNING), pytest.raises(KeyboardInterrupt):
        restore_snapshot(repo, repo.find_snapshot("latest"), str(out))
    [hidden] = os.listdir(out)
    assert hidden.startswith(".cbr-restore-")
    assert any(f"{out}/{hidden} for {out}/{_first_part(src)}" in r.getMessage() for r in caplog.records)


def test_kill_9_mid_restore_leaves_nothing_under_the_real_name(engine, tmp_path: Path) -> None:
    src = tmp_path / "src"
    for d in range(30):
        for f in range(100):
            write(src / f"d{d:02d}" / f"f{f:03d}", b"%d/%d\n" % (d, f) * 50)
    backup_paths(engine.settings(), [str(src)])
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "cbr_agent", "restore", "latest", "--target", str(out)],
                            env=engine.env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            hidden = [p for p in out.iterdir() if p.name.startswith(".cbr-restore-")]
            if hidden and sum(1 for p in hidden[0].rglob("f*")) >= 200:
                break
            time.sleep(0.002)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "the restore ended before it could be killed"
    assert not (out / _first_part(src)).exists()
    again = engine.cli("restore", "latest", "--target", str(out))
    assert again.returncode == 0, again.stderr
    assert_same_tree(src, out / str(src).lstrip("/"))
