"""copy --from-repository through the real CLI: another key, every blob moved once, copies skipped."""

from __future__ import annotations

import json
from pathlib import Path

from cbr_agent.repository import Repository
from tests.integration.engine.conftest import PASSWORD, SMALL_CHUNKS
from tests.integration.engine.treeutil import assert_same_tree, build_tree, random_bytes, write

DEST_PASSWORD = "another password entirely"


def test_copy_between_repositories_with_different_keys(engine, tmp_path: Path) -> None:
    src = build_tree(tmp_path / "src")
    res = engine.cli("backup", str(src), "--tag", "nightly")
    assert res.returncode == 0, res.stderr
    write(src / "later.bin", random_bytes(100_000, 3))
    assert engine.cli("backup", str(src)).returncode == 0
    raw = json.loads(engine.cli("stats", "--mode", "raw-data", "--json").stdout)

    dest = tmp_path / "dest"
    Repository.init(str(dest), DEST_PASSWORD, chunker=SMALL_CHUNKS)
    to_dest = {"CBR_AGENT_REPOSITORY": str(dest), "CBR_AGENT_PASSWORD": DEST_PASSWORD,
               "CBR_AGENT_FROM_PASSWORD": PASSWORD}
    res = engine.cli("copy", "--from-repository", str(engine.repo_path), "--json", env=to_dest)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert len(out["copied"]) == 2 and out["skipped"] == []
    # every distinct blob of the source (data and trees) stored once in the destination
    assert out["blobs_copied"] == raw["blobs"] and out["blobs_present"] == 0

    source_snaps = json.loads(engine.cli("snapshots", "--json").stdout)
    dest_snaps = json.loads(engine.cli("snapshots", "--json", env=to_dest).stdout)
    for a, b in zip(source_snaps, dest_snaps, strict=True):
        assert (a["time"], a["host"], a["paths"], a["tags"]) == (b["time"], b["host"], b["paths"], b["tags"])
        assert a["tree"] != b["tree"]  # another key: other ids
    assert engine.cli("check", "--read-data", env=to_dest).returncode == 0
    res = engine.cli("restore", "latest", "--target", str(tmp_path / "r"), env=to_dest)
    assert res.returncode == 0, res.stderr
    assert_same_tree(src, tmp_path / "r" / str(src).lstrip("/"))

    # again: nothing to do, nothing read
    out = json.loads(engine.cli("copy", "--from-repository", str(engine.repo_path), "--json",
                                env=to_dest).stdout)
    assert out["copied"] == [] and len(out["skipped"]) == 2 and out["trees_read"] == 0
    # a new snapshot that changed one file: only the trees on its path are read, only its data copied
    write(src / "sub" / "deeper" / "file", b"changed deep file")
    new = json.loads(engine.cli("backup", str(src), "--json").stdout)["snapshot_id"]
    res = engine.cli("copy", "--from-repository", str(engine.repo_path), new[:8], "--json", env=to_dest)
    out = json.loads(res.stdout)
    assert [c["source"] for c in out["copied"]] == [new]
    depth = len(Path(src / "sub" / "deeper").parts)
    assert out["trees_read"] == depth  # the root .. sub/deeper, nothing else
    assert out["blobs_copied"] == 1 + depth  # the file's one chunk and the rewritten trees
    res = engine.cli("copy", "--from-repository", str(engine.repo_path), env=to_dest)
    assert res.returncode == 0 and "already here" in res.stdout


def test_copy_refuses_bad_input(engine, tmp_path: Path) -> None:
    write(tmp_path / "src" / "f", b"x")
    assert engine.cli("backup", str(tmp_path / "src")).returncode == 0
    dest = tmp_path / "dest"
    Repository.init(str(dest), DEST_PASSWORD, chunker=SMALL_CHUNKS)
    to_dest = {"CBR_AGENT_REPOSITORY": str(dest), "CBR_AGENT_PASSWORD": DEST_PASSWORD}
    res = engine.cli("copy", "--from-repository", str(engine.repo_path), env=to_dest)
    assert res.returncode == 2 and "CBR_AGENT_FROM_PASSWORD" in res.stderr
    res = engine.cli("copy", "--from-repository", str(engine.repo_path),
                     env={**to_dest, "CBR_AGENT_FROM_PASSWORD": "wrong"})
    assert res.returncode == 12 and "source" in res.stderr
    pw = tmp_path / "pw"
    pw.write_text(PASSWORD + "\n")
    res = engine.cli("copy", "--from-repository", str(engine.repo_path), "--from-password-file", str(pw))
    assert res.returncode == 2 and "same repository" in res.stderr
    res = engine.cli("copy", "--from-repository", str(tmp_path / "nothing"), "--from-password-file",
                     str(pw), env=to_dest)
    assert res.returncode == 10
    res = engine.cli("copy", "--from-repository", str(engine.repo_path), "--from-password-file", str(pw),
                     "--json", env=to_dest)
    assert res.returncode == 0 and len(json.loads(res.stdout)["copied"]) == 1
