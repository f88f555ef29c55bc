"""Micro-benchmark of the data-path building blocks (not collected by pytest).

    python3 tests/bench/bench_blocks.py [--mib 64]

Prints MB/s of chunking, keyed hashing, zstd (levels 1 and 3, text-like and random data), AES-256-GCM
sealing and BlobWriter.add (compress + encrypt + pack + write, into a temp repository), each with 1 and 2
threads; a stage whose C code releases the GIL shows close to 2x with 2 threads on a 2-core host.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))

from cbr_agent import compress as zc
from cbr_agent.chunking import Chunker
from cbr_agent.crypto import KdfParams, MasterKey

MB = 1_000_000


def text_like(size: int, seed: int = 1) -> bytes:
    """Text as the engine benchmark generates it (log, code, CSV and prose lines; tests/bench/treegen.py)."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from treegen import Content

    content = Content(seed)
    kinds = ("log", "code", "csv", "prose")
    return b"".join(content.text(k, size // len(kinds) + 1) for k in kinds)[:size]


def run_threads(n: int, fn: Callable[[int], int], repeat: int = 3) -> float:
    """Best of ``repeat`` runs of fn(i) in n threads, as total MB processed per second."""
    return max(_run_threads(n, fn) for _ in range(repeat))


def _run_threads(n: int, fn: Callable[[int], int]) -> float:
    results = [0] * n

    def body(i: int) -> None:
        results[i] = fn(i)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(n)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    dt = time.perf_counter() - t0
    return sum(results) / dt / MB


def pieces(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=64, help="data per thread (MiB)")
    args = ap.parse_args()
    size = args.mib * 1024 * 1024
    rnd = [os.urandom(size) for _ in range(2)]
    txt = [text_like(size, seed=s) for s in (1, 2)]
    key = MasterKey.generate()
    chunker = Chunker(seed=key.chunker_seed)
    rows: list[tuple[str, float, float]] = []

    def row(name: str, fn: Callable[[int], int]) -> None:
        rows.append((name, run_threads(1, fn), run_threads(2, fn)))
        print(f"{name:<34} {rows[-1][1]:>9.0f} {rows[-1][2]:>9.0f}", flush=True)

    import cryptography

    print(f"cryptography {cryptography.__version__}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    print(f"{'stage (MB/s)':<34} {'1 thread':>9} {'2 threads':>9}")
    with tempfile.TemporaryDirectory() as tmp:  # chunk real files, as the backup does (page cache warm)
        paths = []
        for i in range(2):
            paths.append(os.path.join(tmp, f"f{i}"))
            with open(paths[i], "wb") as f:
                f.write(rnd[i])

        def stream(i: int) -> int:
            with open(paths[i], "rb", buffering=0) as f:
                return sum(len(c) for c in chunker.chunks(f))

        def zero_copy(i: int) -> int:
            with open(paths[i], "rb", buffering=0) as f:
                return sum(len(c) for c in chunker.chunks_of_file(f, size))

        row("chunk file, chunks() (copies)", stream)
        row("chunk file, chunks_of_file()", zero_copy)
    chunks = [pieces(rnd[i], 1 << 20) for i in range(2)]
    row("hash keyed blake3 (1 MiB)", lambda i: sum(len(key.blob_id(c)) * 0 + len(c) for c in chunks[i]))
    tchunks = [pieces(txt[i], 1 << 20) for i in range(2)]
    for level in (1, 2, 3):
        row(f"zstd -{level} text", lambda i, lv=level: sum(len(c) for c in tchunks[i] if zc.compress(c, lv)))
        row(f"zstd -{level} random", lambda i, lv=level: sum(len(c) for c in chunks[i] if zc.compress(c, lv)))
        ratio = sum(len(zc.compress(c, level)[0]) for c in tchunks[0]) / size
        print(f"   zstd -{level} text ratio {ratio:.3f}")
    row(
        "aes-256-gcm seal (1 MiB)", lambda i: sum(len(c) for c in chunks[i] if key.sealer.seal_parts(c, b"x"))
    )
    compressed = [[zc.compress(c)[0] for c in tchunks[i]] for i in range(2)]
    row("zstd decompress text", lambda i: sum(len(zc.decompress(c, 1 << 20)) for c in compressed[i]))

    from cbr_agent.repository import Repository

    for label, data in (("random", chunks), ("text", tchunks)):
        for n in (1, 2):
            with tempfile.TemporaryDirectory() as tmp:
                repo = Repository.init(os.path.join(tmp, "r"), "pw", kdf=KdfParams(n=1024))
                writer = repo.writer()
                fresh = [[os.urandom(4) + c[4:] for c in data[i]] for i in range(2)]

                def add(i: int, w=writer, repo=repo, fresh=fresh) -> int:
                    return sum(len(c) for c in fresh[i] if w.add(repo.blob_id(c), c))

                t0 = time.perf_counter()
                total = run_threads(n, add)
                writer.close()
                dt_all = time.perf_counter() - t0
                print(
                    f"{'writer.add+flush ' + label:<34} {n} thread(s): {total:>6.0f} MB/s add, "
                    f"{n * size / dt_all / MB:.0f} MB/s incl. flush"
                )


if __name__ == "__main__":
    main()
