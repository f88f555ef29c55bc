"""Files replaced by write-then-rename while a backup reads their directory (editors, databases and
config managers save this way): every snapshot must hold the file, as one whole version of it."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from cbr_agent.backup.run import backup_paths
from cbr_agent.restore.restorer import restore_snapshot
from tests.integration.engine.treeutil import write

#: a writer process: saves new versions of each file by write-then-rename, as fast as it can, until
#: its stdin closes. Version n of a file is the line "NAME n" repeated, so a restored copy names its
#: version and any mix of two versions shows. It writes in a staging directory outside the backup root
#: (so its temporary files never appear there) and prints one line once every file has a version.
WRITER = r"""
import os, sys, threading
staging, root, *specs = sys.argv[1:]
files = [(name, int(size)) for name, size in (s.split(":") for s in specs)]
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
n = 0
while not stop.is_set():
    n += 1
    for name, size in files:
        line = f"{name} {n:09d}\n".encode()
        tmp = os.path.join(staging, name + ".tmp")
        with open(tmp, "wb") as fh:
            fh.write(line * (size // len(line)))
        os.rename(tmp, os.path.join(root, name))
    if n == 1:
        print("ready", flush=True)
"""

#: a small file (read in the small-files batches) and one above the chunker's minimum (the readers path)
REPLACED = {"settings.conf": 2_000, "store.db": 150_000}
BACKUPS = 6


def whole_version(name: str, data: bytes, size: int) -> bool:
    lines = data.splitlines(keepends=True)
    return bool(lines) and len(data) == size // len(lines[0]) * len(lines[0]) \
        and lines[0].startswith(name.encode() + b" ") and data == lines[0] * len(lines)


def test_a_file_renamed_over_during_backups_is_in_every_snapshot(engine, tmp_path: Path) -> None:
    src = tmp_path / "src"
    staging = tmp_path / "staging"
    staging.mkdir()
    for i in range(400):  # around the replaced files, so that the walk and the reads take a while
        write(src / f"a{i:03d}", b"%d\n" % i * (i % 50 + 1))
    write(src / "zz-after", b"after")
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(staging), str(src), *(f"{n}:{s}" for n, s in REPLACED.items())],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout is not None and writer.stdout.readline() == "ready\n"
        summaries = []
        for _ in range(BACKUPS):
            summaries.append(backup_paths(engine.settings(), [str(src)]))
            time.sleep(0.01)
    finally:
        assert writer.stdin is not None
        writer.stdin.close()
        writer.wait(30)
    repo = engine.open()
    for n, summary in enumerate(summaries):
        assert summary.snapshot_id, summary
        assert summary.warnings == [], summary.warnings
        out = tmp_path / f"out-{n}"
        restore_snapshot(repo, repo.find_snapshot(summary.snapshot_id), str(out))
        restored = out / str(src).lstrip("/")
        for name, size in REPLACED.items():
            assert (restored / name).exists(), f"backup {n}: {name} missing from the snapshot"
            data = (restored / name).read_bytes()
            assert whole_version(name, data, size), f"backup {n}: {name} is not one whole version"
        assert len(list(restored.iterdir())) == 401 + len(REPLACED)
