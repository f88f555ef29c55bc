"""tag, backup --tag, and the --host/--path/--tag filters of snapshots, find, restore latest."""

from __future__ import annotations

import copy
import json
import subprocess
from datetime import timedelta
from pathlib import Path

from cbr_agent.repository.snapshot import decode_snapshot, encode_snapshot
from tests.integration.engine.treeutil import write


def snapshots(engine, *args: str) -> list[dict]:
    res = engine.cli("snapshots", "--json", *args)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def backup(engine, *args: str) -> str:
    res = engine.cli("backup", *args, "--json")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)["snapshot_id"]


def other_host_copy(engine, snapshot_id: str, host: str, *, hours_later: float = 1,
                    tags: list[str] | None = None) -> str:
    """A snapshot of another host (same data): what a second machine backing up here would leave."""
    repo = engine.open()
    snap = copy.deepcopy(repo.load_snapshot(snapshot_id))
    snap.host, snap.id = host, None
    snap.time = snap.time + timedelta(hours=hours_later)
    snap.tags = tags or []
    return repo.save_snapshot(snap)


def test_backup_tag_and_tag_add_remove_set(engine, tmp_path: Path) -> None:
    write(tmp_path / "src" / "f", b"data")
    first = backup(engine, str(tmp_path / "src"), "--tag", "nightly", "--tag", "db,prod")
    [snap] = snapshots(engine)
    assert snap["id"] == first and snap["tags"] == ["nightly", "db", "prod"]
    res = engine.cli("tag", first[:8], "--add", "keep", "--remove", "db", "--json")
    assert res.returncode == 0, res.stderr
    [change] = json.loads(res.stdout)
    assert change["old"] == first and change["new"] != first and change["tags"] == ["keep", "nightly", "prod"]
    [snap] = snapshots(engine)  # replaced, not added: the old object is gone
    assert snap["id"] == change["new"] and snap["tags"] == ["keep", "nightly", "prod"]
    repo = engine.open()
    again = repo.load_snapshot(change["new"])
    assert again.original == first and again.tree == repo.load_snapshot(change["new"]).tree
    # the same change twice writes nothing
    res = engine.cli("tag", "latest", "--add", "keep", "--json")
    assert json.loads(res.stdout)[0]["new"] is None
    res = engine.cli("tag", "latest", "--set", "")
    assert res.returncode == 0 and "(none)" in res.stdout
    [snap] = snapshots(engine)
    assert snap["tags"] == [] and engine.open().load_snapshot(snap["id"]).original == first
    # the data is still all there
    assert engine.cli("check").returncode == 0
    res = engine.cli("restore", "latest", "--target", str(tmp_path / "r"))
    restored = tmp_path / "r" / tmp_path.relative_to("/") / "src" / "f"
    assert res.returncode == 0 and restored.read_bytes() == b"data"


def test_tag_refuses_bad_requests(engine, tmp_path: Path) -> None:
    write(tmp_path / "src" / "f", b"data")
    backup(engine, str(tmp_path / "src"))
    for args in (["tag", "latest"], ["tag", "latest", "--set", "a", "--add", "b"], ["tag", "--add", "x"],
                 ["tag", "latest", "--add", "bad\ttag"], ["tag", "latest", "--add", " padded"],
                 ["backup", str(tmp_path / "src"), "--tag", "x\x01"]):
        res = engine.cli(*args)
        assert res.returncode == 2, (args, res.stderr)
        assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert len(snapshots(engine)) == 1


def test_filters_on_snapshots_find_restore_and_latest_per_group(engine, tmp_path: Path) -> None:
    write(tmp_path / "a" / "one.txt", b"one")
    write(tmp_path / "b" / "two.txt", b"two")
    mine_a = backup(engine, str(tmp_path / "a"), "--tag", "daily")
    mine_b = backup(engine, str(tmp_path / "b"))
    theirs = other_host_copy(engine, mine_a, "otherhost", tags=["daily", "remote"])
    here = engine.open().load_snapshot(mine_a).host

    assert {s["id"] for s in snapshots(engine, "--host", "otherhost")} == {theirs}
    assert {s["id"] for s in snapshots(engine, "--host", "otherhost", "--host", here)} == {
        mine_a, mine_b, theirs}
    assert {s["id"] for s in snapshots(engine, "--path", str(tmp_path / "a"))} == {mine_a, theirs}
    assert {s["id"] for s in snapshots(engine, "--tag", "daily")} == {mine_a, theirs}
    assert {s["id"] for s in snapshots(engine, "--tag", "daily,remote")} == {theirs}
    assert {s["id"] for s in snapshots(engine, "--tag", "remote", "--tag", "nothing")} == {theirs}
    # --latest 1: the newest of each host and path set
    mine_a2 = backup(engine, str(tmp_path / "a"))
    assert {s["id"] for s in snapshots(engine, "--latest", "1")} == {mine_a2, mine_b, theirs}
    res = engine.cli("snapshots")
    assert "TAGS" in res.stdout and "daily,remote" in res.stdout

    # find and restore 'latest' within the filter
    res = engine.cli("find", "*.txt", "--host", "otherhost", "--json")
    assert [r["snapshot"] for r in json.loads(res.stdout)] == [theirs]
    res = engine.cli("restore", "latest", "--host", here, "--snapshot-path", str(tmp_path / "b"),
                     "--target", str(tmp_path / "r1"), "--json")
    assert res.returncode == 0 and json.loads(res.stdout)["snapshot_id"] == mine_b
    res = engine.cli("restore", "latest", "--tag", "remote", "--target", str(tmp_path / "r2"), "--json")
    assert json.loads(res.stdout)["snapshot_id"] == theirs
    res = engine.cli("restore", "latest", "--host", "nobody", "--target", str(tmp_path / "r3"))
    assert res.returncode == 1 and "no snapshot matches the --host/--path/--tag filter" in res.stderr
    # tag by filter: every snapshot of the other host
    res = engine.cli("tag", "--host", "otherhost", "--add", "seen", "--json")
    assert [c["old"] for c in json.loads(res.stdout)] == [theirs]


def test_an_older_reader_decodes_a_retagged_snapshot(engine, tmp_path: Path) -> None:
    """Compatibility: the snapshot decoder of the release before tags could change (unknown fields
    ignored) still reads a snapshot that carries 'original'."""
    write(tmp_path / "src" / "f", b"data")
    first = backup(engine, str(tmp_path / "src"))
    res = engine.cli("tag", first, "--add", "x", "--json")
    new_id = json.loads(res.stdout)[0]["new"]
    snap = engine.open().load_snapshot(new_id)
    encoded = encode_snapshot(snap)
    assert b'"original"' in encoded
    old_source = subprocess.run(["git", "show", "df25767:cbr_agent/repository/snapshot.py"],
                                capture_output=True, text=True, cwd=Path(__file__).parents[3])
    if old_source.returncode == 0:
        namespace: dict = {}
        exec(compile(old_source.stdout, "snapshot_v1.py", "exec"), namespace)
        old = namespace["decode_snapshot"](encoded, id=new_id)
        assert old.tags == ["x"] and old.tree == snap.tree
    # and the current decoder reads snapshots written without the field as before
    plain = decode_snapshot(encode_snapshot(engine.open().load_snapshot(new_id)).replace(
        b', "original": "' + first.encode() + b'"', b""))
    assert plain.original is None
