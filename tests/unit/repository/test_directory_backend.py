"""The directory backend: put/get/range/list/delete/exists, atomic writes, URL forms."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cbr_agent.errors import RepositoryError, RepositoryExists
from cbr_agent.repository.backend import DirectoryBackend, open_backend, path_from_url


@pytest.fixture
def backend(tmp_path) -> DirectoryBackend:
    b = DirectoryBackend(tmp_path / "repo")
    b.create()
    return b


def test_put_get_range_list_delete(backend: DirectoryBackend) -> None:
    pack = "ab" + "0" * 62
    backend.put("data/" + pack, b"0123456789")
    backend.put("index/i1", [b"ab", b"", memoryview(b"cd")])
    assert backend.get("data/" + pack) == b"0123456789"
    assert backend.get("data/" + pack, 3, 4) == b"3456"
    assert backend.get("data/" + pack, 8) == b"89"
    assert backend.get("index/i1") == b"abcd"
    assert list(backend.list("data")) == [(pack, 10)]
    assert (backend.root / "data" / "ab" / pack).is_file()
    assert backend.exists("index/i1") and backend.size("index/i1") == 4
    backend.delete("index/i1")
    backend.delete("index/i1")  # already gone: fine
    assert not backend.exists("index/i1")
    with pytest.raises(FileNotFoundError):
        backend.get("index/i1")


@settings(max_examples=25, deadline=None)
@given(bufs=st.lists(st.binary(max_size=300), max_size=3000))
def test_many_buffers_are_written_in_order(tmp_path_factory, bufs: list[bytes]) -> None:
    b = DirectoryBackend(tmp_path_factory.mktemp("b") / "r")
    b.create()
    b.put("index/x", bufs)
    assert b.get("index/x") == b"".join(bufs)


def test_writes_leave_no_temp_files_and_replace_atomically(backend: DirectoryBackend) -> None:
    backend.put("locks/l", b"one")
    backend.put("locks/l", b"two")
    assert backend.get("locks/l") == b"two"
    assert [p.name for p in (backend.root / "locks").iterdir()] == ["l"]


def test_bad_names_are_refused(backend: DirectoryBackend) -> None:
    for name in ("other/x", "data/", "index/../config", "keys/.tmp-1", "data/a/b"):
        with pytest.raises(ValueError):
            backend.put(name, b"x")


def test_stale_temp_files_are_removed(backend: DirectoryBackend) -> None:
    old = backend.root / "data" / "ab" / ".tmp-dead"
    old.write_bytes(b"x")
    past = time.time() - 7200
    os.utime(old, (past, past))
    young = backend.root / "index" / ".tmp-young"
    young.write_bytes(b"x")
    assert backend.remove_stale_temp_files(3600) == 1
    assert not old.exists() and young.exists()
    assert list(backend.list("index")) == []  # temp files are never listed as objects


def test_create_refuses_occupied_locations(tmp_path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(RepositoryExists):
        DirectoryBackend(tmp_path / "file").create()
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(RepositoryExists):
        DirectoryBackend(tmp_path / "full").create()


def test_url_forms(tmp_path) -> None:
    assert path_from_url(str(tmp_path)) == tmp_path
    assert path_from_url(f"file://{tmp_path}") == tmp_path
    assert path_from_url("file:///srv/backup%20repo") == Path("/srv/backup repo")
    assert path_from_url("file://localhost/srv/r") == Path("/srv/r")
    assert open_backend(str(tmp_path)).location == str(tmp_path)
    for bad in ("", "s3://b/p", "sftp://h/p", "file://elsewhere/x"):
        with pytest.raises(RepositoryError):
            path_from_url(bad)
