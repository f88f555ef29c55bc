"""mount: the snapshot file system itself (every read range), and a real FUSE mount through the CLI."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cbr_agent.explore.mount import fuse_module
from cbr_agent.explore.snapfs import SnapshotFS, time_name
from tests.integration.engine.treeutil import assert_same_tree, build_tree, random_bytes, write

BIG = random_bytes(200_000, 11)  # about a dozen blobs with the tests' small chunks


@pytest.fixture
def mounted(engine, tmp_path: Path):
    src = tmp_path / "src"
    write(src / "big.bin", BIG)
    write(src / "dir" / "small.txt", b"small")
    res = engine.cli("backup", str(src), "--tag", "first", "--json")
    assert res.returncode == 0, res.stderr
    repo = engine.open()
    return SnapshotFS(repo, repo.list_snapshots, blob_cache_bytes=64 * 1024), src, repo


def test_layout_and_metadata(mounted) -> None:
    fs, src, repo = mounted
    [snap] = repo.list_snapshots()
    name = time_name(snap.time)
    assert fs.readdir("/") == ["hosts", "ids", "snapshots", "tags"]
    assert fs.readdir("/snapshots") == sorted([name, "latest"])
    assert fs.readlink("/snapshots/latest") == name
    assert fs.readdir(f"/hosts/{snap.host}") == sorted([name, "latest"])
    assert fs.readdir("/tags") == ["first"] and fs.readdir("/ids") == [snap.id[:8]]
    inside = f"/ids/{snap.id[:8]}{src}"
    assert fs.readdir(inside) == ["big.bin", "dir"]
    attrs = fs.getattr(inside + "/big.bin")
    st = os.stat(src / "big.bin")
    assert attrs["st_size"] == len(BIG) and attrs["st_mtime"] == st.st_mtime_ns
    assert attrs["st_mode"] == st.st_mode and attrs["st_uid"] == st.st_uid
    for path, code in ((f"{inside}/nope", errno.ENOENT), ("/nothing", errno.ENOENT),
                       (f"{inside}/big.bin/x", errno.ENOTDIR)):
        with pytest.raises(OSError) as info:
            fs.getattr(path)
        assert info.value.errno == code
    with pytest.raises(OSError) as info:
        fs.file_node(inside + "/dir")
    assert info.value.errno == errno.EISDIR


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(offset=st.integers(0, len(BIG) + 10), size=st.integers(0, 70_000))
def test_any_range_reads_what_the_file_holds(mounted, offset: int, size: int) -> None:
    fs, src, _repo = mounted
    node = fs.file_node(f"/snapshots/latest{src}/big.bin".replace("latest", fs.readlink(
        "/snapshots/latest")))
    assert fs.read(node, size, offset) == BIG[offset: offset + size]
    # the cache stays within its bound (plus the blob being added)
    assert fs.cached_blob_bytes <= 64 * 1024 + 65536


def test_reads_fetch_only_the_blobs_they_need(mounted) -> None:
    fs, src, repo = mounted
    name = fs.readlink("/snapshots/latest")
    node = fs.file_node(f"/snapshots/{name}{src}/big.bin")
    loads = []
    original = repo.load_blob
    repo.load_blob = lambda blob_id: loads.append(blob_id) or original(blob_id)
    assert fs.read(node, 10, 0) == BIG[:10]
    assert len(loads) == 1 and len(node["content"]) > 3


def _fuse_usable() -> bool:
    return fuse_module() is not None and os.path.exists("/dev/fuse") and bool(
        shutil.which("fusermount3") or shutil.which("fusermount"))


@pytest.mark.skipif(not _fuse_usable(), reason="no FUSE here (binding, /dev/fuse or fusermount missing)")
def test_a_real_mount_through_the_cli(engine, tmp_path: Path) -> None:
    src = build_tree(tmp_path / "src")
    res = engine.cli("backup", str(src), "--json")
    assert res.returncode == 0, res.stderr
    snap_id = json.loads(res.stdout)["snapshot_id"]
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "cbr_agent", "mount", str(mnt)], env=engine.env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not (mnt / "snapshots").exists():
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "the mount did not appear"
            time.sleep(0.1)
        latest = mnt / "snapshots" / "latest"
        assert latest.is_symlink()
        assert_same_tree(src, latest / str(src).lstrip("/"))
        assert (mnt / "ids" / snap_id[:8] / str(src).lstrip("/") / "text.txt").read_bytes() == \
            (src / "text.txt").read_bytes()
        with pytest.raises(OSError) as info:
            (latest / str(src).lstrip("/") / "new").write_bytes(b"x")
        assert info.value.errno in (errno.EROFS, errno.EACCES)
        # the mount holds a shared lock: a prune waits for it to end
        assert engine.cli("prune").returncode == 11
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            subprocess.run(["fusermount3", "-u", "-z", str(mnt)], check=False)
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
    assert not os.path.ismount(mnt)


def test_mount_refuses_a_missing_mount_point(engine, tmp_path: Path) -> None:
    res = engine.cli("mount", str(tmp_path / "nowhere"))
    assert res.returncode == 2 and "not a directory" in res.stderr
