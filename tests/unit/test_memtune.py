"""The malloc settings are taken by glibc (where the engine runs) and do what they are for."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

glibc_only = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")

# Frees a 16 MiB block (glibc's sliding threshold rises to it), then allocates 48 blocks of 1 MiB with a
# small object kept between each (so the heap cannot be trimmed from its top) and frees the large ones:
# prints how much of the 48 MiB the process still holds.
_KEPT_AFTER_FREE = """
import sys
from cbr_agent.memtune import tune_malloc
if sys.argv[1] == "tuned":
    assert tune_malloc()
def rss():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS:")) * 1024
del bytearray(16 << 20)[:]
before = rss()
big, small = [], []
for i in range(48):
    b = bytearray(1 << 20)
    b[::4096] = b"x" * 256
    big.append(b)
    small.append(bytes(2000 + i))
del big
print((rss() - before) >> 20)
"""


@glibc_only
def test_glibc_takes_the_settings() -> None:
    # in a fresh interpreter: the settings are process-wide and cached per process
    code = "from cbr_agent.memtune import tune_malloc as t; print(t(), t())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "True"]


@glibc_only
def test_freed_megabyte_blocks_go_back_to_the_system() -> None:
    def kept(mode: str) -> int:
        out = subprocess.run([sys.executable, "-c", _KEPT_AFTER_FREE, mode], capture_output=True,
                             text=True, check=True)
        return int(out.stdout)

    assert kept("tuned") < 8
    assert kept("default") > 24  # what the test guards against: glibc's own behaviour keeps them
