"""Properties of the FastCDC chunker: lossless, bounded sizes, stable boundaries, same cuts on every path."""

from __future__ import annotations

import io
import os
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cbr_agent.chunking import Chunker, ChunkerParams

# small sizes so hypothesis examples span many chunks
SMALL = ChunkerParams(min_size=256, avg_size=1024, max_size=4096)


def pseudo_random(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


data_st = st.one_of(
    st.binary(max_size=20_000),
    st.builds(pseudo_random, st.integers(0, 2**32), st.integers(0, 60_000)),
)


@settings(max_examples=60, deadline=None)
@given(data=data_st, seed=st.integers(0, 2**63 - 1))
def test_concatenation_of_chunks_is_the_input_and_sizes_are_within_limits(data: bytes, seed: int) -> None:
    chunks = list(Chunker(SMALL, seed=seed).chunks(io.BytesIO(data)))
    assert b"".join(chunks) == data
    assert all(0 < len(c) <= SMALL.max_size for c in chunks)
    assert all(len(c) >= SMALL.min_size for c in chunks[:-1])


PARAMS = [
    SMALL,
    ChunkerParams(min_size=64, avg_size=256, max_size=1024, normalization=0),
    ChunkerParams(min_size=512, avg_size=1024, max_size=2048, normalization=3),
    ChunkerParams(min_size=1024, avg_size=2048, max_size=16384, normalization=2),
]


@settings(max_examples=200, deadline=None)
@given(
    data=data_st,
    hint=st.one_of(st.none(), st.integers(0, 70_000)),
    params=st.sampled_from(PARAMS),
    seed=st.integers(0, 2**63 - 1),
    block=st.integers(1, 40_000),
)
def test_file_and_buffer_paths_cut_exactly_like_the_stream_path(
    data: bytes, hint: int | None, params: ChunkerParams, seed: int, block: int
) -> None:
    chunker = Chunker(params, seed=seed)
    stream = list(chunker.chunks(io.BytesIO(data)))
    from_file = [bytes(v) for v in chunker.chunks_of_file(io.BytesIO(data), hint, block_size=block)]
    assert from_file == stream
    from_file = [bytes(v) for v in chunker.chunks_of_file(io.BytesIO(data), hint)]
    from_buffer = [bytes(v) for v in chunker.chunks_of_buffer(data)]
    assert from_file == stream
    assert from_buffer == stream
    # one buffer reused from block to block, whatever the hint says of the size: the same cuts
    assert list(chunker.chunks(io.BytesIO(data), hint, block_size=block)) == stream


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    size=st.integers(0, 50_000),
    tail=st.builds(pseudo_random, st.integers(0, 2**32), st.integers(1, 20_000)),
)
def test_boundaries_before_the_last_max_size_bytes_survive_an_append(
    seed: int, size: int, tail: bytes
) -> None:
    data = pseudo_random(seed, size)
    chunker = Chunker(SMALL)
    before = chunker.cut_points(data)
    after = chunker.cut_points(data + tail)
    # a cut whose chunk ends at least max_size bytes before the old end cannot see the appended bytes
    stable = [p for p in before if p <= len(data) - SMALL.max_size]
    assert after[: len(stable)] == stable


def test_insert_in_the_middle_changes_only_nearby_chunks() -> None:
    data = pseudo_random(1, 400_000)
    edited = data[:200_000] + b"inserted bytes" + data[200_000:]
    chunker = Chunker(SMALL, seed=3)
    a = set(chunker.chunks(io.BytesIO(data)))
    b = set(chunker.chunks(io.BytesIO(edited)))
    assert len(a - b) <= 3  # one or two chunks around the edit differ, the rest dedup


def test_seed_changes_the_boundaries() -> None:
    data = pseudo_random(2, 200_000)
    assert Chunker(SMALL, seed=1).cut_points(data) != Chunker(SMALL, seed=2).cut_points(data)


def test_file_chunks_are_independent_of_later_reads(tmp_path) -> None:
    # views handed out earlier must not change when the chunker reads on (no reused buffer)
    data = os.urandom(3 * 1024 * 1024)
    path = tmp_path / "f"
    path.write_bytes(data)
    chunker = Chunker(ChunkerParams(min_size=64 * 1024, avg_size=256 * 1024, max_size=1024 * 1024))
    with open(path, "rb", buffering=0) as f:
        views = list(chunker.chunks_of_file(f, size_hint=len(data)))
    assert b"".join(bytes(v) for v in views) == data
    assert len(views) > 3


@pytest.mark.parametrize(
    "kwargs",
    [
        {"min_size": 10, "avg_size": 1024, "max_size": 4096},
        {"min_size": 256, "avg_size": 1000, "max_size": 4096},
        {"min_size": 4096, "avg_size": 1024, "max_size": 8192},
        {"min_size": 256, "avg_size": 1024, "max_size": 64 * 1024 * 1024},
    ],
)
def test_bad_params_are_refused(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        ChunkerParams(**kwargs)


def test_params_round_trip_through_the_config_form() -> None:
    assert ChunkerParams.from_dict(SMALL.to_dict()) == SMALL
