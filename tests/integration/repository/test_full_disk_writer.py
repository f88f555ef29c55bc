"""A repository disk that fills up while a pack is being spooled: every later write meets the same
"disk is full", never the closed spool of the pack that failed (a race seen once in CI: another thread's
blob went into that pack and reported "Bad file descriptor" instead)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from cbr_agent.errors import RepositoryError
from tests.unit.repository.repo_helpers import init_repo


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to mount a small tmpfs")
def test_after_a_full_disk_every_write_says_the_disk_is_full(tmp_path: Path) -> None:
    small = tmp_path / "small-disk"
    small.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(small)]).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        repo = init_repo(small / "repo")
        writer = repo.writer(pack_size=64 * 1024 * 1024)  # one pack, spooled as it fills
        errors = []
        for _ in range(6):
            try:
                writer.save(os.urandom(1024 * 1024))
            except RepositoryError as exc:
                errors.append(str(exc))
        assert errors and all("disk is full" in e for e in errors), errors
        with pytest.raises(RepositoryError, match="disk is full"):
            writer.close()
    finally:
        subprocess.run(["umount", "-l", str(small)])
