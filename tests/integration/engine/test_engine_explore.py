"""find, diff, stats and dump through the real CLI, on real trees."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.integration.engine.treeutil import BAD_NAME, assert_same_tree, build_tree, random_bytes, write


def backup(engine, *paths: Path, extra: tuple[str, ...] = ()) -> str:
    res = engine.cli("backup", *map(str, paths), "--json", *extra)
    assert res.returncode in (0, 3), res.stderr
    return json.loads(res.stdout)["snapshot_id"]


def cli_json(engine, *args: str) -> object:
    res = engine.cli(*args, "--json")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


# ---------------------------------------------------------------------------------------------- find
def test_find_by_name_path_and_time_across_snapshots(engine, tmp_path: Path) -> None:
    src = tmp_path / "src"
    write(src / "etc" / "app.conf", b"a", mtime_ns=1_600_000_000 * 10**9)
    write(src / "etc" / "deep" / "other.conf", b"b", mtime_ns=1_700_000_000 * 10**9)
    write(src / "notes.txt", b"c")
    first = backup(engine, src)
    (src / "etc" / "app.conf").unlink()
    write(src / "new.conf", b"d", mtime_ns=1_700_000_000 * 10**9)
    second = backup(engine, src)

    found = cli_json(engine, "find", "*.conf")
    by_snap = {r["snapshot"]: sorted(m["path"] for m in r["matches"]) for r in found}
    assert by_snap == {
        first: [str(src / "etc/app.conf"), str(src / "etc/deep/other.conf")],
        second: [str(src / "etc/deep/other.conf"), str(src / "new.conf")],
    }
    # an absolute glob, a path relative to the backup path, and one snapshot only
    found = cli_json(engine, "find", f"{src}/etc/*.conf", "--snapshot", first[:10])
    assert [[m["path"] for m in r["matches"]] for r in found] == [[str(src / "etc/app.conf")]]
    found = cli_json(engine, "find", "etc/**/*.conf", "--snapshot", "latest")
    assert [m["path"] for r in found for m in r["matches"]] == [str(src / "etc/deep/other.conf")]
    # modification time: --newest bounds from above, --oldest from below
    found = cli_json(engine, "find", "*.conf", "--newest", "2021-01-01")
    assert {m["path"] for r in found for m in r["matches"]} == {str(src / "etc/app.conf")}
    found = cli_json(engine, "find", "*.conf", "--oldest", "2021-01-01", "--snapshot", second)
    assert {m["path"] for r in found for m in r["matches"]} == {str(src / "etc/deep/other.conf"),
                                                               str(src / "new.conf")}
    # nothing found: exit 0, said plainly
    res = engine.cli("find", "nothing-like-this")
    assert res.returncode == 0 and "no entry matches in 2 snapshots" in res.stdout
    # human output names the snapshot and the path
    res = engine.cli("find", "notes.txt")
    assert res.returncode == 0 and first[:8] in res.stdout and str(src / "notes.txt") in res.stdout


def test_find_rejects_bad_input_in_one_line(engine, tmp_path: Path) -> None:
    write(tmp_path / "src" / "f", b"x")
    backup(engine, tmp_path / "src")
    for args in (("find", "a/../b"), ("find", "x", "--newest", "yesterday-ish"),
                 ("find", "x", "--oldest", "3 days")):
        res = engine.cli(*args)
        assert res.returncode == 2, (args, res.stderr)
        assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr
    res = engine.cli("find", "x", "--snapshot", "ffffffff")
    assert res.returncode == 1 and "no snapshot matches" in res.stderr


def test_find_skips_unchanged_directories_of_later_snapshots(engine, tmp_path: Path) -> None:
    src = tmp_path / "src"
    for i in range(20):
        write(src / f"d{i}" / "f.txt", b"x")
    for _ in range(3):
        backup(engine, src)
    repo = engine.open()
    from cbr_agent.explore.find import FindFilter, compile_pattern, find_in_snapshots

    loads = []
    original = repo.load_blob
    repo.load_blob = lambda blob_id: loads.append(blob_id) or original(blob_id)
    found = list(find_in_snapshots(repo, repo.list_snapshots(), FindFilter([compile_pattern("*.bin")])))
    assert found == []
    # three snapshots of the same tree: each directory read once, not three times
    assert len(loads) == len(set(loads))


# ---------------------------------------------------------------------------------------------- diff
def test_diff_lists_each_kind_of_change_and_the_bytes(engine, tmp_path: Path) -> None:
    src = tmp_path / "src"
    write(src / "same.txt", b"same")
    write(src / "changed.bin", random_bytes(50_000, 1))
    write(src / "gone" / "a", random_bytes(30_000, 2))
    write(src / "meta.txt", b"meta")
    write(src / "becomes-dir", b"file first")
    first = backup(engine, src)
    write(src / "changed.bin", random_bytes(50_000, 3))
    shutil.rmtree(src / "gone")
    write(src / "added" / "b", random_bytes(40_000, 4))
    os.chmod(src / "meta.txt", 0o600)
    (src / "becomes-dir").unlink()
    write(src / "becomes-dir" / "inside", b"now a dir")
    second = backup(engine, src)

    out = cli_json(engine, "diff", first, second, "--metadata")
    changes = {(c["kind"], c["path"].removeprefix(str(src))) for c in out["changes"]}
    assert ("M", "/changed.bin") in changes
    assert {("-", "/gone"), ("-", "/gone/a"), ("+", "/added"), ("+", "/added/b")} <= changes
    assert ("T", "/becomes-dir") in changes and ("+", "/becomes-dir/inside") in changes
    assert ("U", "/meta.txt") in changes
    assert not any(p == "/same.txt" for _k, p in changes)
    stats = out["stats"]
    assert stats["added"]["file"] == 2 and stats["removed"]["file"] == 1 and stats["changed"] == 1
    # the data of the changed, added and removed files (random bytes do not compress or dedup)
    assert stats["bytes_added"] == 50_000 + 40_000 + len(b"now a dir")
    assert stats["bytes_removed"] == 50_000 + 30_000 + len(b"file first")
    # without --metadata the mode change is not listed; the same snapshot twice: no change
    plain = cli_json(engine, "diff", first, second)
    assert not any(c["kind"] == "U" for c in plain["changes"])
    same = cli_json(engine, "diff", second, "latest")
    assert same["changes"] == [] and same["stats"]["bytes_added"] == 0
    res = engine.cli("diff", first[:12], second[:12])
    assert res.returncode == 0
    assert f"M    {src}/changed.bin" in res.stdout and "data:" in res.stdout


# ---------------------------------------------------------------------------------------------- stats
def test_stats_modes(engine, tmp_path: Path) -> None:
    src = tmp_path / "src"
    blob = random_bytes(100_000, 7)
    write(src / "a.bin", blob)
    write(src / "copy.bin", blob)  # same contents: stored once
    write(src / "text.txt", b"hello world\n" * 5000)  # compresses well
    backup(engine, src)
    write(src / "later.bin", random_bytes(20_000, 8))
    backup(engine, src)

    restore = cli_json(engine, "stats")
    per_snap = 2 * 100_000 + 60_000
    assert restore["snapshots"] == 2 and restore["total_size"] == per_snap * 2 + 20_000
    assert restore["total_file_count"] == 7
    latest = cli_json(engine, "stats", "latest", "--mode", "files-by-contents")
    assert latest["snapshots"] == 1 and latest["total_file_count"] == 3
    assert latest["total_size"] == 100_000 + 60_000 + 20_000
    raw = cli_json(engine, "stats", "--mode", "raw-data")
    assert raw["data_raw_size"] == 100_000 + 60_000 + 20_000
    assert raw["stored_size"] < raw["raw_size"] and raw["compression_ratio"] > 1
    assert raw["dedup_ratio"] == pytest.approx((per_snap * 2 + 20_000) / raw["data_raw_size"], rel=1e-3)
    assert raw["packs"] >= 1 and raw["blobs"] == raw["data_blobs"] + raw["tree_blobs"]
    res = engine.cli("stats", "--mode", "raw-data")
    assert res.returncode == 0 and "compression ratio" in res.stdout
    res = engine.cli("stats", "--mode", "everything")
    assert res.returncode == 2


# ---------------------------------------------------------------------------------------------- dump
def test_dump_a_file_byte_for_byte(engine, tmp_path: Path) -> None:
    src = tmp_path / "src"
    data = random_bytes(300_000, 5)  # several chunks
    write(src / "big.bin", data)
    write(src / BAD_NAME, b"odd name")
    backup(engine, src)
    res = subprocess.run([*engine_cmd(), "dump", "latest", str(src / "big.bin")], env=engine.env(),
                         capture_output=True, timeout=60)
    assert res.returncode == 0 and res.stdout == data
    res = subprocess.run([*engine_cmd(), "dump", "latest", os.fsencode(str(src / BAD_NAME))],
                         env=engine.env(), capture_output=True, timeout=60)
    assert res.returncode == 0 and res.stdout == b"odd name"
    # --tar: a regular file as a one-member archive, with its mode and mtime
    res = subprocess.run([*engine_cmd(), "dump", "latest", str(src / "big.bin"), "--tar"], env=engine.env(),
                         capture_output=True, timeout=60)
    import io
    import tarfile

    with tarfile.open(fileobj=io.BytesIO(res.stdout)) as tar:
        [member] = tar.getmembers()
        assert member.name == "big.bin" and tar.extractfile(member).read() == data
        # sub-second precision through the pax header
        assert member.mtime == pytest.approx(os.stat(src / "big.bin").st_mtime_ns / 1e9, abs=1e-6)
    res = engine.cli("dump", "latest", str(src / "missing"))
    assert res.returncode == 2 and "is not in snapshot" in res.stderr


def engine_cmd() -> list[str]:
    import sys

    return [sys.executable, "-m", "cbr_agent"]


def test_dump_a_directory_as_tar_keeps_metadata(engine, tmp_path: Path) -> None:
    src = build_tree(tmp_path / "src")
    backup(engine, src)
    tar_file = tmp_path / "out.tar"
    with open(tar_file, "wb") as fh:
        res = subprocess.run([*engine_cmd(), "dump", "latest", str(src)], env=engine.env(), stdout=fh,
                             stderr=subprocess.PIPE, timeout=60)
    assert res.returncode == 0, res.stderr
    dest = tmp_path / "x"
    dest.mkdir()
    subprocess.run(["tar", "--xattrs", "--xattrs-include=*", "--numeric-owner", "-xpf", str(tar_file),
                    "-C", str(dest)], check=True)
    assert_same_tree(src, dest / "src")
    # the whole snapshot: member names relative to the snapshot root
    with open(tar_file, "wb") as fh:
        subprocess.run([*engine_cmd(), "dump", "latest", "/"], env=engine.env(), stdout=fh, check=True)
    import tarfile

    with tarfile.open(tar_file) as tar:
        names = tar.getnames()
    assert str(src).lstrip("/") + "/text.txt" in names and not any(n.startswith("/") for n in names)


def test_find_relative_patterns_follow_each_snapshots_backup_paths(engine, tmp_path: Path) -> None:
    """The same subtree under the same path, in snapshots with different backup paths: a relative
    pattern matches in one and not the other (the skip-what-held-nothing memory must not mix them)."""
    home = tmp_path / "home"
    write(home / "u" / ".ssh" / "id", b"key")
    wide = backup(engine, home)
    narrow = backup(engine, home / "u")
    found = cli_json(engine, "find", ".ssh/*", "--snapshot", wide, "--snapshot", narrow)
    assert [(r["snapshot"], [m["path"] for m in r["matches"]]) for r in found] == [
        (narrow, [str(home / "u" / ".ssh" / "id")])]
    found = cli_json(engine, "find", "u/.ssh/*")
    assert [r["snapshot"] for r in found] == [wide]


def _stderr_on_a_terminal(engine, *args: str) -> tuple[int, str, str]:
    """Run the CLI with stderr on a pseudo-terminal (stdout a pipe): what a person at a terminal sees."""
    import sys

    master, slave = os.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "cbr_agent", *args], env=engine.env(),
                            stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    screen = b""
    try:
        while chunk := os.read(master, 4096):
            screen += chunk
    except OSError:  # EIO once the child closed its end
        pass
    out = proc.stdout.read() if proc.stdout else b""
    proc.wait(timeout=60)
    os.close(master)
    return proc.returncode, out.decode(), screen.decode(errors="replace")


def test_long_commands_show_a_progress_line_only_on_a_terminal(engine, tmp_path: Path) -> None:
    write(tmp_path / "src" / "a" / "f.txt", b"x")
    backup(engine, tmp_path / "src")
    code, out, screen = _stderr_on_a_terminal(engine, "stats")
    assert code == 0 and "directories read" in screen and "\r" in screen
    assert "directories read" not in out
    code, out, screen = _stderr_on_a_terminal(engine, "find", "f.txt")
    assert code == 0 and "searching snapshot 1 of 1" in screen and "f.txt" in out
    code, out, screen = _stderr_on_a_terminal(engine, "stats", "--json")
    assert code == 0 and screen == "" and json.loads(out)["snapshots"] == 1
    res = engine.cli("stats")  # stderr a pipe: quiet
    assert res.stderr == ""
