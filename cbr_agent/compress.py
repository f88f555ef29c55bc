"""zstd compression of blobs: one compressor per thread (zstd contexts are not thread-safe), raw when not
smaller."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import zstandard

#: level 3: on text-like data level 1 stores 22 % more than restic's default and level 2 the same, level 3
#: 14 % less, for about 30 % more CPU than level 1 (tests/bench/bench_blocks.py; README "Repository format")
DEFAULT_LEVEL = 3

_local = threading.local()


def _compressor(level: int) -> zstandard.ZstdCompressor:
    cache = getattr(_local, "compressors", None)
    if cache is None:
        cache = _local.compressors = {}
    comp = cache.get(level)
    if comp is None:
        comp = cache[level] = zstandard.ZstdCompressor(level=level, write_content_size=True)
    return comp


def _decompressor() -> zstandard.ZstdDecompressor:
    dec = getattr(_local, "decompressor", None)
    if dec is None:
        dec = _local.decompressor = zstandard.ZstdDecompressor()
    return dec


#: the level that stores blobs as they are (``compression = "off"``; zstd's own level 0 means its default)
OFF = 0


def compress(data: bytes | memoryview, level: int | None = None) -> tuple[bytes | memoryview, bool]:
    """Return ``(payload, compressed)``; ``payload`` is ``data`` itself when zstd does not make it smaller
    (or the level is :data:`OFF`)."""
    if len(data) < 64 or level == OFF:
        return data, False
    out = _compressor(DEFAULT_LEVEL if level is None else level).compress(data)
    if len(out) >= len(data):
        return data, False
    return out, True


def compress_many(
    datas: Sequence[bytes | memoryview], level: int | None = None
) -> list[tuple[bytes | memoryview, bool]]:
    """:func:`compress` for many (small) inputs in one zstd call, which releases the GIL for the whole
    batch and saves the per-call cost that dominates on inputs of a few KiB; same frames as compress."""
    out: list[tuple[bytes | memoryview, bool]] = [(d, False) for d in datas]
    if level == OFF:
        return out
    todo = [i for i, d in enumerate(datas) if len(d) >= 64]
    if not todo:
        return out
    frames = _compressor(DEFAULT_LEVEL if level is None else level).multi_compress_to_buffer(
        [datas[i] for i in todo], threads=1)
    for i, frame in zip(todo, frames, strict=True):
        if len(frame) < len(datas[i]):
            out[i] = (frame.tobytes(), True)
    return out


def decompress(payload: bytes, raw_length: int) -> bytes:
    """Inverse of :func:`compress` for a compressed payload; raises ``zstandard.ZstdError`` when damaged or
    when the result is not exactly ``raw_length`` bytes."""
    out = _decompressor().decompress(payload, max_output_size=raw_length)
    if len(out) != raw_length:
        raise zstandard.ZstdError(f"decompressed {len(out)} bytes, expected {raw_length}")
    return out
