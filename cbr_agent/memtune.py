"""One glibc malloc arena for the engine's threads.

glibc gives each thread that allocates its own arena (up to 8 per core), and memory freed in one is not
reused by another, so a backup whose threads pass chunks of about a megabyte between them keeps far more
memory than it holds: on the benchmark's 1.1 GB mixed tree, peak RSS fell from about 270 MB to 210 MB with
two arenas, at the same speed. One arena (all threads share the main one; they allocate little outside
the GIL, so they seldom wait for it) lowered it again, at the same speed or faster (2026-12-07, A/B
pairs alternating, page cache emptied; MiB): mixed 1 %-changed re-run 84.1 against 87.1 (five pairs),
mixed first backup 116-127 against 124-143 (three), mixed restore 69-74 against 75-76 (three); the
tiny tree's backups did not move (their memory is the walker's own). ``MALLOC_ARENA_MAX`` does the same
from the environment. Not glibc (musl): nothing to do.

glibc's sliding mmap threshold is left alone on purpose. Fixing it (``M_MMAP_THRESHOLD``) gives freed
megabyte blocks back to the system at once, which lowers that backup's peak RSS further (about 140 MB
with the sliding threshold, 131 MB fixed at 8 MiB, 108 MB at 256 KiB), but every block is then mapped
and faulted in afresh: 7 % and 35 % more time, and restores slowed as much (2026-12-05, A/B runs).
"""

from __future__ import annotations

import ctypes
import functools

_M_ARENA_MAX = -8  # from glibc's malloc.h


@functools.cache
def cap_malloc_arenas(count: int = 1) -> bool:
    """Cap the arenas threads created from now on may use; True when the C library took it."""
    try:
        # the process's own symbols, libc's among them (ctypes.util.find_library would run ldconfig and
        # a compiler in subprocesses: a third of a second)
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_ARENA_MAX, count))
