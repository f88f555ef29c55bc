"""The malloc arena cap is taken by glibc (where the engine runs) and is a no-op elsewhere."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt(M_ARENA_MAX) is glibc's")
def test_glibc_takes_the_arena_cap() -> None:
    # in a fresh interpreter: the cap is process-wide and cached per process
    code = "from cbr_agent.memtune import cap_malloc_arenas as c; print(c(2), c(2))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "True"]
