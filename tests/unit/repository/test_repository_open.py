"""init/open: URLs, existing/missing/foreign repositories, passwords, extra keys, damaged config."""

from __future__ import annotations

import json
import os

import pytest

from cbr_agent.errors import (
    IntegrityError,
    RepositoryError,
    RepositoryExists,
    RepositoryNotFound,
    WrongPassword,
)
from cbr_agent.repository import ChunkerParams, Repository
from tests.unit.repository.repo_helpers import CHEAP_KDF, init_repo, read_files, store_files


def test_init_then_open_by_path_and_file_url(tmp_path) -> None:
    params = ChunkerParams(min_size=2048, avg_size=8192, max_size=65536)
    repo = init_repo(tmp_path / "r", chunker=params)
    for url in (str(tmp_path / "r"), f"file://{tmp_path / 'r'}"):
        opened = Repository.open(url, "pw")
        assert opened.id == repo.id and len(opened.id) == 64
        assert opened.chunker == params


def test_init_refuses_an_existing_repository_and_a_non_empty_directory(tmp_path) -> None:
    init_repo(tmp_path / "r")
    with pytest.raises(RepositoryExists):
        init_repo(tmp_path / "r")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "file").write_text("x")
    with pytest.raises(RepositoryExists):
        init_repo(tmp_path / "other")
    (tmp_path / "empty").mkdir()
    init_repo(tmp_path / "empty")  # an empty directory is fine


def test_missing_and_empty_locations_are_not_found(tmp_path) -> None:
    with pytest.raises(RepositoryNotFound):
        Repository.open(str(tmp_path / "nope"), "pw")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RepositoryNotFound):
        Repository.open(str(tmp_path / "empty"), "pw")


def test_foreign_directories_are_named_as_such(tmp_path) -> None:
    restic_like = tmp_path / "restic"
    (restic_like / "data").mkdir(parents=True)
    (restic_like / "config").write_bytes(os.urandom(200))
    with pytest.raises(RepositoryError, match="not a cbr-agent repository") as info:
        Repository.open(str(restic_like), "pw")
    assert not isinstance(info.value, RepositoryNotFound)
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("hello")
    with pytest.raises(RepositoryError, match="not a cbr-agent repository"):
        Repository.open(str(other), "pw")
    json_config = tmp_path / "jsonconf"
    json_config.mkdir()
    (json_config / "config").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(RepositoryError, match="not a cbr-agent repository"):
        Repository.open(str(json_config), "pw")


def test_wrong_password_is_refused_without_echoing_it(tmp_path) -> None:
    init_repo(tmp_path / "r", password="correct horse")
    with pytest.raises(WrongPassword) as info:
        Repository.open(str(tmp_path / "r"), "battery staple")
    assert "battery" not in str(info.value) and "horse" not in str(info.value)


def test_a_second_password_opens_the_same_data(tmp_path) -> None:
    repo = init_repo(tmp_path / "r", password="one")
    sid = store_files(repo, {"a/x": b"hello" * 1000})
    repo.add_key("two", kdf=CHEAP_KDF)
    for pw in ("one", "two"):
        assert read_files(Repository.open(str(tmp_path / "r"), pw), sid) == {"a/x": b"hello" * 1000}
    with pytest.raises(WrongPassword):
        Repository.open(str(tmp_path / "r"), "three")


def _flip(path, pos: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2 if pos is None else pos] ^= 0x01
    path.write_bytes(bytes(data))


def test_damaged_key_file_is_damage_not_wrong_password(tmp_path) -> None:
    init_repo(tmp_path / "r")
    (key_file,) = (tmp_path / "r" / "keys").iterdir()
    _flip(key_file)
    with pytest.raises(IntegrityError, match="damaged"):
        Repository.open(str(tmp_path / "r"), "pw")


def test_other_key_still_opens_when_one_key_file_is_damaged(tmp_path) -> None:
    repo = init_repo(tmp_path / "r", password="one")
    second = repo.add_key("two", kdf=CHEAP_KDF)
    first = next(p for p in (tmp_path / "r" / "keys").iterdir() if p.name != second)
    _flip(first)
    assert Repository.open(str(tmp_path / "r"), "two").id == repo.id
    with pytest.raises(WrongPassword, match="damaged"):
        Repository.open(str(tmp_path / "r"), "one")


def test_damaged_config_is_an_integrity_error(tmp_path) -> None:
    init_repo(tmp_path / "r")
    config = tmp_path / "r" / "config"
    head = json.loads(config.read_text())
    sealed = bytearray(head["sealed"].encode())
    sealed[20] = ord("A") if sealed[20] != ord("A") else ord("B")
    head["sealed"] = sealed.decode()
    config.write_text(json.dumps(head))
    with pytest.raises(IntegrityError, match="config"):
        Repository.open(str(tmp_path / "r"), "pw")


@pytest.mark.parametrize(("version", "says"), [
    (None, "config file is damaged"), ("1", "config file is damaged"), (True, "config file is damaged"),
    (0, "config file is damaged"), (9, "format version 9 (by its config file)"),
])
def test_a_config_format_version_that_is_not_ours_names_the_config(tmp_path, version, says) -> None:
    """A flipped byte in the plain head (a lost or mangled "version") is damage; a larger number is a
    newer format, which an upgrade reads."""
    init_repo(tmp_path / "r")
    config = tmp_path / "r" / "config"
    head = json.loads(config.read_text())
    head.pop("version")
    if version is not None:
        head["version"] = version
    config.write_text(json.dumps(head))
    with pytest.raises(RepositoryError) as caught:
        Repository.open(str(tmp_path / "r"), "pw")
    assert says in str(caught.value)
    assert ("upgrade cbr-agent" in str(caught.value)) == (version == 9)


def test_bad_urls_and_empty_password(tmp_path) -> None:
    with pytest.raises(RepositoryError, match="scheme"):
        Repository.open("ftp://host/prefix", "pw")
    with pytest.raises(RepositoryError, match="file:///"):
        Repository.open("file://otherhost/x", "pw")
    with pytest.raises(RepositoryError, match="empty password"):
        Repository.init(str(tmp_path / "r"), "")


def test_init_finishes_over_an_init_that_was_killed_before_its_config(tmp_path) -> None:
    repo = init_repo(tmp_path / "r")
    (tmp_path / "r" / "config").unlink()  # what kill -9 between the key file and the config leaves
    with pytest.raises(RepositoryError, match="unfinished"):
        Repository.open(str(tmp_path / "r"), "pw")
    again = init_repo(tmp_path / "r", password="new")
    assert again.id != repo.id
    assert len(list((tmp_path / "r" / "keys").iterdir())) == 1  # the orphaned key file is gone
    assert Repository.open(str(tmp_path / "r"), "new").id == again.id


def test_init_does_not_reuse_a_directory_holding_data_without_config(tmp_path) -> None:
    repo = init_repo(tmp_path / "r")
    store_files(repo, {"a/x": b"data"})
    (tmp_path / "r" / "config").unlink()
    with pytest.raises(RepositoryExists):
        init_repo(tmp_path / "r")
