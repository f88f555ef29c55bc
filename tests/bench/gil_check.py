#!/usr/bin/env python3
"""Which building blocks of the data path release the GIL, as installed here.

For each operation, a loop of calls runs for about a second while another Python thread spins and records
how long it was ever kept from running. A call that releases the GIL stalls the spinner for about the
interpreter's switch interval at most; one that holds it stalls the spinner for the whole call.
Run it on a quiet machine (other load also stalls the spinner).

    python3 tests/bench/gil_check.py
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable

import blake3
import zstandard
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from pyfastcdc import FastCDC

MiB = 1 << 20


def stalls(op: Callable[[], object], seconds: float = 1.0) -> tuple[float, float, float]:
    """(seconds per call, longest stall of the spinner, share of the time it was stalled > 1 ms)."""
    stop = threading.Event()
    gaps: list[float] = []

    def spin() -> None:
        last = time.perf_counter()
        while not stop.is_set():
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    spinner = threading.Thread(target=spin)
    spinner.start()
    time.sleep(0.02)
    start = time.perf_counter()
    calls = 0
    while time.perf_counter() - start < seconds:
        op()
        calls += 1
    elapsed = time.perf_counter() - start
    stop.set()
    spinner.join()
    return elapsed / calls, max(gaps, default=0.0), sum(g for g in gaps if g > 0.001) / elapsed


def operations(size: int) -> dict[str, Callable[[], object]]:
    data = blake3.blake3(b"gil-check").digest(length=size)
    text = (b"2026-11-26T10:00:00Z INFO [worker-3] request id=8a9f user=alpha took=12ms\n"
            * (size // 70 + 1))[:size]
    aes = AESGCM(bytes(32))
    sealed = aes.encrypt(bytes(12), data, b"")
    zc = zstandard.ZstdCompressor(level=3)
    cdc = FastCDC(avg_size=MiB)
    return {
        "aes-gcm encrypt": lambda: aes.encrypt(bytes(12), data, b""),
        "aes-gcm decrypt": lambda: aes.decrypt(bytes(12), sealed, b""),
        "zstd-3 compress (text)": lambda: zc.compress(text),
        "blake3 keyed (max_threads=1)": lambda: blake3.blake3(data, key=bytes(32), max_threads=1).digest(),
        "pyfastcdc cut_buf": lambda: sum(1 for _ in cdc.cut_buf(data)),
    }


def main() -> int:
    import cryptography

    print(f"python {sys.version.split()[0]}, cryptography {cryptography.__version__}, "
          f"switch interval {sys.getswitchinterval() * 1000:g} ms")
    for size in (MiB, 8 * MiB):
        for name, op in operations(size).items():
            per_call, longest, share = stalls(op)
            verdict = "holds the GIL" if share > 0.5 else "releases the GIL"
            print(f"{name:30} {size // MiB} MiB: {per_call * 1000:7.2f} ms/call, other thread stalled "
                  f"{share:6.1%} of the time (longest {longest * 1000:6.1f} ms) -> {verdict}")
    per_call, longest, share = stalls(
        lambda: Scrypt(salt=b"s" * 16, length=32, n=2**15, r=8, p=1).derive(b"password"))
    print(f"{'scrypt n=2**15 r=8':30}      : {per_call * 1000:7.2f} ms/call, other thread stalled "
          f"{share:6.1%} of the time (longest {longest * 1000:6.1f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
