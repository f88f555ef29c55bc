"""The malloc arena cap is taken by glibc (where the engine runs) and is a no-op elsewhere."""

from __future__ import annotations

import os
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


_THREADS_ALLOCATE = """
import ctypes, sys, threading
from cbr_agent.memtune import cap_malloc_arenas
if sys.argv[1] == "cap":
    assert cap_malloc_arenas()
kept = []
def work():
    kept.append([bytes(1000 + i % 7) for i in range(2000)])  # above pymalloc's limit: malloc's
threads = [threading.Thread(target=work) for _ in range(4)]
for t in threads: t.start()
for t in threads: t.join()
sys.stderr.flush()
ctypes.CDLL(None).malloc_stats()  # one "Arena N:" block per arena, on stderr
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt(M_ARENA_MAX) is glibc's")
@pytest.mark.parametrize("cap", [True, False])
def test_with_the_cap_every_thread_allocates_from_one_arena(cap: bool) -> None:
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    out = subprocess.run([sys.executable, "-c", _THREADS_ALLOCATE, "cap" if cap else "free"],
                         capture_output=True, text=True, check=True, env=env)
    arenas = [line for line in out.stderr.splitlines() if line.startswith("Arena ")]
    assert (len(arenas) == 1) if cap else (len(arenas) > 1)
