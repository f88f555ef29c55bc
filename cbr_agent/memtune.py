"""glibc malloc settings for the engine's threads: fewer arenas, and large blocks given back when freed.

glibc gives each thread that allocates its own arena (up to 8 per core), and memory freed in one is not
reused by another, so a backup whose threads pass chunks of about a megabyte between them keeps far more
memory than it holds: on the benchmark's 1.1 GB mixed tree, peak RSS fell from about 270 MB to 210 MB with
two arenas, at the same speed (``MALLOC_ARENA_MAX`` does the same from the environment). Not glibc (musl):
nothing to do.
"""

from __future__ import annotations

import ctypes
import functools

_M_ARENA_MAX = -8  # from glibc's malloc.h
_M_MMAP_THRESHOLD = -3
#: blocks at least this large get their own mapping, returned to the system when freed
MMAP_THRESHOLD = 256 * 1024


@functools.cache
def tune_malloc(arenas: int = 2, mmap_threshold: int = MMAP_THRESHOLD) -> bool:
    """Cap the arenas threads created from now on may use, and fix the mmap threshold; True when the C
    library took both.

    A fixed threshold also turns off glibc's sliding one, which rises to the size of every large block
    freed (up to 32 MiB): after that, the engine's chunks and pack pieces of about a megabyte come from
    the heap, whose freed holes are kept, not returned. Measured on the mixed benchmark tree's first
    backup: peak RSS 147 MB with the sliding threshold, about 105 MB with this one.
    """
    try:
        # the process's own symbols, libc's among them (ctypes.util.find_library would run ldconfig and
        # a compiler in subprocesses: a third of a second)
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_ARENA_MAX, arenas)) and bool(mallopt(_M_MMAP_THRESHOLD, mmap_threshold))
