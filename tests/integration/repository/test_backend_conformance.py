"""One contract for every backend: directory, memory, and S3 (moto's S3 server on loopback).

Each test gets a fresh, created (empty) backend from the ``any_backend`` fixture (see conftest.py)."""

from __future__ import annotations

import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cbr_agent.errors import RepositoryExists
from cbr_agent.repository.backend import TYPES

PACK_A = "a1" + "0" * 62
PACK_B = "b2" + "1" * 62


def test_put_get_whole_and_buffers(any_backend) -> None:
    any_backend.put("data/" + PACK_A, b"0123456789")
    any_backend.put("index/i1", [b"ab", b"", memoryview(b"cd"), bytearray(b"e")])
    assert any_backend.get("data/" + PACK_A) == b"0123456789"
    assert any_backend.get("index/i1") == b"abcde"
    any_backend.put("config", b"{}")
    assert any_backend.get("config") == b"{}"


def test_ranged_get(any_backend) -> None:
    any_backend.put("data/" + PACK_A, bytes(range(256)) * 4)
    assert any_backend.get("data/" + PACK_A, 3, 4) == bytes([3, 4, 5, 6])
    assert any_backend.get("data/" + PACK_A, 1020) == bytes([252, 253, 254, 255])
    assert any_backend.get("data/" + PACK_A, 1000, 24) == bytes(range(232, 256))
    assert any_backend.get("data/" + PACK_A, 5, 0) == b""


def test_missing_object(any_backend) -> None:
    with pytest.raises(FileNotFoundError):
        any_backend.get("index/nothere")
    with pytest.raises(FileNotFoundError):
        any_backend.get("data/" + PACK_A, 0, 10)
    with pytest.raises(FileNotFoundError):
        any_backend.size("index/nothere")
    assert not any_backend.exists("index/nothere")


def test_list_by_type_with_sizes_and_many_pages(any_backend) -> None:
    names = {f"{i:02x}" + f"{i:062x}": i + 1 for i in range(37)}  # more than one page (conftest sets 10)
    for name, size in names.items():
        any_backend.put("data/" + name, b"x" * size)
    any_backend.put("index/i1", b"abc")
    any_backend.put("snapshots/s1", b"abcd")
    assert dict(any_backend.list("data")) == names
    assert list(any_backend.list("index")) == [("i1", 3)]
    assert list(any_backend.list("snapshots")) == [("s1", 4)]
    assert list(any_backend.list("locks")) == []
    with pytest.raises(ValueError):
        list(any_backend.list("nonsense"))


def test_delete_is_idempotent(any_backend) -> None:
    any_backend.put("locks/l1", b"x")
    any_backend.delete("locks/l1")
    any_backend.delete("locks/l1")
    any_backend.delete("locks/never")
    assert not any_backend.exists("locks/l1")
    assert list(any_backend.list("locks")) == []


def test_exists_and_size(any_backend) -> None:
    any_backend.put("keys/k1", b"12345")
    assert any_backend.exists("keys/k1") and any_backend.size("keys/k1") == 5


def test_bad_names_are_refused(any_backend) -> None:
    for name in ("nonsense/x", "data/", "data/a/b", "index/.hidden", "../config"):
        with pytest.raises(ValueError):
            any_backend.put(name, b"x")


def test_create_is_empty_and_refuses_existing(any_backend) -> None:
    assert any_backend.is_present()
    assert all(list(any_backend.list(t)) == [] for t in TYPES) and not any_backend.exists("config")
    any_backend.create()  # an empty, created location may be created again (an init that was cut short)
    any_backend.put("config", b"{}")
    assert not any_backend.is_empty()
    with pytest.raises(RepositoryExists):
        any_backend.create()


def test_parallel_puts_are_all_visible(any_backend) -> None:
    def put(i: int) -> None:
        any_backend.put(f"index/p{i:03d}", bytes([i]) * (1000 + i))

    threads = [threading.Thread(target=put, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert dict(any_backend.list("index")) == {f"p{i:03d}": 1000 + i for i in range(12)}
    assert any_backend.get("index/p007") == bytes([7]) * 1007


def test_large_object_roundtrip(any_backend) -> None:
    """Larger than the S3 backend's single-put size in these tests: multipart, then ranged reads."""
    blob = bytes(range(256)) * (11 * 4096 + 77)  # about 11 MiB: three parts of at least 5 MiB
    any_backend.put("data/" + PACK_B, [blob[:1000], blob[1000:]])
    assert any_backend.size("data/" + PACK_B) == len(blob)
    assert any_backend.get("data/" + PACK_B) == blob
    assert any_backend.get("data/" + PACK_B, len(blob) - 5000, 4000) == blob[-5000:-1000]


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(blob=st.binary(min_size=1, max_size=5000), data=st.data())
def test_any_range_reads_what_was_written(any_backend, blob: bytes, data) -> None:
    name = "index/r" + str(len(blob))
    any_backend.put(name, blob)
    offset = data.draw(st.integers(0, len(blob)), label="offset")
    length = data.draw(st.none() | st.integers(0, len(blob) - offset), label="length")
    assert any_backend.get(name, offset, length) == (blob[offset:] if length is None
                                                      else blob[offset : offset + length])
