"""zstd blob compression: round trip, raw when not smaller, damage detected, thread-local contexts."""

from __future__ import annotations

import os
import threading

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from cbr_agent import compress as zc


@settings(max_examples=100, deadline=None)
@given(data=st.binary(max_size=5000), level=st.integers(1, 5))
def test_round_trip(data: bytes, level: int) -> None:
    payload, compressed = zc.compress(data, level)
    if compressed:
        assert len(payload) < len(data)
        assert zc.decompress(payload, len(data)) == data
    else:
        assert payload == data


def test_incompressible_data_is_stored_raw() -> None:
    data = os.urandom(100_000)
    payload, compressed = zc.compress(data)
    assert not compressed and payload is data


def test_text_is_compressed() -> None:
    data = b"the same line again and again\n" * 1000
    payload, compressed = zc.compress(data)
    assert compressed and len(payload) < len(data) // 10


def test_wrong_length_or_damage_raises() -> None:
    data = b"abc" * 1000
    payload, _ = zc.compress(data)
    with pytest.raises(zstandard.ZstdError):
        zc.decompress(payload, len(data) - 1)
    damaged = bytearray(payload)
    damaged[len(damaged) // 2] ^= 0xFF
    with pytest.raises(zstandard.ZstdError):
        zc.decompress(bytes(damaged[:-3]), len(data))


def test_many_threads_compress_concurrently() -> None:
    errors: list[BaseException] = []

    def work(seed: int) -> None:
        try:
            for i in range(50):
                data = (f"{seed}-{i} " * 500).encode()
                payload, ok = zc.compress(data)
                assert ok and zc.decompress(payload, len(data)) == data
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_level_off_stores_everything_as_it_is() -> None:
    text = b"the same line again\n" * 500
    assert zc.compress(text, zc.OFF) == (text, False)
    assert zc.compress_many([text, text[:100]], zc.OFF) == [(text, False), (text[:100], False)]
    assert zc.compress(text, 1)[1]  # while level 1 compresses it
