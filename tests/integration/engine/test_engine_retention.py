"""forget's extended policy, prune --dry-run and check --read-data-subset through the real CLI."""

from __future__ import annotations

import copy
import json
import os
from datetime import timedelta
from pathlib import Path

from tests.integration.engine.treeutil import random_bytes, write


def cli_json(engine, *args: str, code: int = 0) -> dict:
    res = engine.cli(*args, "--json")
    assert res.returncode == code, res.stderr
    return json.loads(res.stdout)


def backup(engine, path: Path) -> str:
    return cli_json(engine, "backup", str(path))["snapshot_id"]


def copies(engine, snapshot_id: str, minutes: list[float], **fields) -> list[str]:
    """Snapshots of the same data at other times (a history without waiting for it), at ``minutes``
    from an anchor on the full hour a day before the snapshot (so hour buckets are known)."""
    repo = engine.open()
    base = repo.load_snapshot(snapshot_id)
    anchor = base.time.replace(minute=0, second=0, microsecond=0) - timedelta(hours=24)
    ids = []
    for m in minutes:
        snap = copy.deepcopy(base)
        snap.id = None
        snap.time = anchor + timedelta(minutes=m)
        for k, v in fields.items():
            setattr(snap, k, v)
        ids.append(repo.save_snapshot(snap))
    return ids


def test_forget_keep_hourly_yearly_within_tag_and_group_by(engine, tmp_path: Path) -> None:
    write(tmp_path / "src" / "f", b"data")
    newest = backup(engine, tmp_path / "src")
    day = 24 * 60
    older = copies(engine, newest, [50, 40, -30, -6 * 60, -400 * day, -800 * day])
    tagged = copies(engine, newest, [-900 * day], tags=["legal"])[0]
    other = copies(engine, newest, [-90], host="otherhost")[0]

    out = cli_json(engine, "forget", "--keep-hourly", "2", "--dry-run")
    # per host and path set: the newest of the two latest hours here, and the other host's only one
    assert set(out["keep"]) == {newest, older[0], other} and out["dry_run"] is True
    assert out["reasons"][newest] == ["hourly"]
    out = cli_json(engine, "forget", "--keep-yearly", "10", "--dry-run", "--host", engine.open()
                   .load_snapshot(newest).host)
    assert other not in out["keep"] + out["forget"]  # the filter: only this host's snapshots
    assert len(out["keep"]) == len({engine.open().load_snapshot(i).time.astimezone().year
                                     for i in [newest, *older, tagged]})
    out = cli_json(engine, "forget", "--keep-within", "1d12h", "--dry-run")
    assert set(out["keep"]) == {newest, *older[:4], other}
    out = cli_json(engine, "forget", "--keep-last", "1", "--keep-tag", "legal", "--dry-run")
    assert tagged in out["keep"] and out["reasons"][tagged] == ["tag legal"]
    out = cli_json(engine, "forget", "--keep-last", "1", "--group-by", "", "--dry-run")
    assert out["keep"] == [newest]
    out = cli_json(engine, "forget", "--keep-last", "1", "--group-by", "host", "--dry-run")
    assert set(out["keep"]) == {newest, other}
    # for real
    out = cli_json(engine, "forget", "--keep-within", "2h", "--keep-tag", "legal")
    left = {s["id"] for s in cli_json(engine, "snapshots")}
    assert left == set(out["keep"]) == {newest, tagged, other}


def test_forget_rejects_bad_policies(engine) -> None:
    for args in (["--keep-within", "soon"], ["--keep-hourly", "-1"], ["--group-by", "color"],
                 ["--keep-tag", ","], []):
        res = engine.cli("forget", *args)
        assert res.returncode == 2, (args, res.stderr)
        assert len(res.stderr.strip().splitlines()) == 1


def _repo_files(engine) -> dict[str, int]:
    out = {}
    for dirpath, _dirs, files in os.walk(engine.repo_path):
        for name in files:
            full = Path(dirpath) / name
            out[str(full.relative_to(engine.repo_path))] = full.stat().st_mtime_ns
    return out


def test_prune_dry_run_reports_what_prune_then_does(engine, tmp_path: Path) -> None:
    write(tmp_path / "a" / "big", random_bytes(400_000, 1))
    write(tmp_path / "b" / "big", random_bytes(300_000, 2))
    backup(engine, tmp_path / "a")
    gone = backup(engine, tmp_path / "b")
    # forget --dry-run --prune: what forgetting and pruning would free, nothing changed
    before = _repo_files(engine)
    out = cli_json(engine, "forget", "--keep-last", "1", "--group-by", "", "--dry-run", "--prune")
    assert out["forget"] and out["prune"]["dry_run"] is True and out["prune"]["bytes_freed"] > 400_000
    assert _repo_files(engine) == before
    cli_json(engine, "forget", "--keep-last", "1", "--group-by", "", "--host", "nobody")  # none chosen
    assert gone in {s["id"] for s in cli_json(engine, "snapshots")}
    res = engine.cli("forget", "--keep-last", "1", "--group-by", "")
    assert res.returncode == 0
    before = _repo_files(engine)
    estimate = cli_json(engine, "prune", "--dry-run")
    assert _repo_files(engine) == before
    assert estimate["dry_run"] is True and estimate["packs_deleted"] >= 1
    res = engine.cli("prune", "--dry-run")
    assert res.returncode == 0 and "would free about" in res.stdout
    done = cli_json(engine, "prune")
    assert done["packs_deleted"] == estimate["packs_deleted"]
    assert done["packs_rewritten"] == estimate["packs_rewritten"]
    assert done["blobs_removed"] == estimate["blobs_removed"]
    # the estimate leaves out only the shrinking of rewritten packs' headers and the new index
    assert abs(done["bytes_freed"] - estimate["bytes_freed"]) < 4096 + 200 * done["packs_rewritten"]
    assert engine.cli("check", "--read-data").returncode == 0


def test_check_read_data_subset_slices_cover_every_pack_once(engine, tmp_path: Path) -> None:
    for i in range(12):
        write(tmp_path / "src" / f"f{i}", random_bytes(120_000, i))
        backup(engine, tmp_path / "src")  # a pack or two per run
    full = cli_json(engine, "check", "--read-data")
    total = full["packs"]
    assert total >= 6
    read = []
    for n in range(1, 5):
        report = cli_json(engine, "check", "--read-data-subset", f"{n}/4")
        assert report["ok"] and report["read_data_subset"] == f"{n}/4"
        read.append(report["packs_read"])
    assert sum(read) == total  # four nightly slices read every pack exactly once
    report = cli_json(engine, "check", "--read-data-subset", "100%")
    assert report["packs_read"] == total and report["blobs_verified"] == full["blobs_verified"]
    report = cli_json(engine, "check", "--read-data-subset", "10%")
    assert report["packs_read"] == -(-total // 10)
    res = engine.cli("check", "--read-data-subset", "1/4")
    assert res.returncode == 0 and "subset 1/4" in res.stdout
    for bad in ("0/4", "5/4", "x", "0%", "101%", "1/0"):
        res = engine.cli("check", "--read-data-subset", bad)
        assert res.returncode == 2, (bad, res.stderr)


def test_check_subset_finds_damage_only_in_the_slice_that_holds_it(engine, tmp_path: Path) -> None:
    write(tmp_path / "src" / "f", random_bytes(200_000, 9))
    backup(engine, tmp_path / "src")
    repo = engine.open()
    from cbr_agent.repository.check import PackSubset

    by_pack = repo.index.by_pack()
    data_packs = [p for p, entries in by_pack.items() if not any(e.flags & 1 for e in entries)]
    victim = data_packs[0]
    path = engine.repo_path / "data" / victim[:2] / victim
    raw = bytearray(path.read_bytes())
    raw[100] ^= 0xFF  # inside the first blob: only reading the data finds it
    path.write_bytes(bytes(raw))
    assert engine.cli("check").returncode == 0
    holding = next(n for n in range(1, 4) if PackSubset(f"{n}/3").selects(victim))
    for n in range(1, 4):
        res = engine.cli("check", "--read-data-subset", f"{n}/3", "--json")
        assert res.returncode == (1 if n == holding else 0), (n, res.stdout)
