"""The ``compression`` setting: a backup stores its blobs at the level asked, whatever the repository's,
and every level restores the same files (a blob says whether it is compressed; zstd reads any level)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.integration.engine.treeutil import assert_same_tree, write


def text_tree(root: Path, tag: bytes) -> Path:
    """About 4 MB of log and CSV lines, its bytes its own (``tag``): no backup deduplicates another's."""
    for i in range(20):
        numbers = range(i * 3000, i * 3000 + 3000)
        lines = (b"%s %06d GET /api/v1/items/%d 200 OK\n" % (tag, n, n % 97) for n in numbers)
        write(root / f"d{i % 4}" / f"log{i}.txt", b"".join(lines))
    write(root / "big.csv", b"".join(b"%s,%d,%d,alpha,beta,%d\n" % (tag, n, n * 7 % 1000, n % 13)
                                     for n in range(60_000)))
    return root


def test_each_level_stores_what_it_says_and_restores_the_same(engine, tmp_path: Path) -> None:
    stored = {}
    for compression in ("off", "fast", "auto", "max"):
        src = text_tree(tmp_path / f"src-{compression}", compression.encode())
        done = engine.cli("backup", "--json", str(src), env={"CBR_AGENT_COMPRESSION": compression})
        assert done.returncode == 0, done.stderr
        summary = json.loads(done.stdout)
        stored[compression] = summary["bytes_stored"] / summary["bytes_added"]
        out = tmp_path / f"out-{compression}"
        restored = engine.cli("restore", summary["snapshot_id"], "--target", str(out))
        assert restored.returncode == 0, restored.stderr
        assert_same_tree(src, out / src.relative_to("/"))
    assert stored["off"] >= 1.0, stored  # nothing compressed: the plaintext and the sealing's few bytes
    assert stored["auto"] < 0.25 and stored["fast"] < 0.25, stored
    # (level 1 is not always larger than 3: on these regular lines it is smaller)
    assert stored["max"] < 0.9 * stored["auto"], stored


def test_a_level_that_is_none_is_refused_before_anything_is_read(engine, tmp_path: Path) -> None:
    src = text_tree(tmp_path / "src", b"x")
    done = engine.cli("backup", str(src), env={"CBR_AGENT_COMPRESSION": "0"})
    assert done.returncode != 0
    assert "CBR_AGENT_COMPRESSION" in done.stderr and "from 1 to 19" in done.stderr
    assert "Traceback" not in done.stderr
    listed = engine.cli("snapshots", "--json")
    assert listed.returncode == 0 and json.loads(listed.stdout) == []
