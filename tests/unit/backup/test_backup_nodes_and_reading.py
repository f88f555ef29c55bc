"""Nodes from lstat, the change rule, reading files (small, chunked, sparse, vanished), password rules."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from cbr_agent.backup.blobpool import BlobPool
from cbr_agent.backup.filesaver import FileProblem, FileSaver
from cbr_agent.backup.nodes import node_from_stat, read_xattrs, same_file
from cbr_agent.backup.password import generate_password_file, require_password, resolve_password
from cbr_agent.chunking import ChunkerParams
from cbr_agent.config import load_settings
from cbr_agent.errors import ConfigError


def test_node_fields(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"abc")
    os.chmod(f, 0o2750)
    os.setxattr(f, "user.k", b"\xff")
    node = node_from_stat("f", os.lstat(f))
    assert node["type"] == "file" and node["mode"] == 0o2750 and node["size"] == 3
    assert "links" not in node and "dev" not in node
    os.link(f, tmp_path / "g")
    linked = node_from_stat("f", os.lstat(f))
    assert linked["links"] == 2 and linked["dev"] == os.lstat(f).st_dev
    assert read_xattrs(str(f)) == {"user.k": "/w=="}
    os.symlink("f", tmp_path / "l")
    assert read_xattrs(str(tmp_path / "l")) == {}  # the link itself, not its target
    os.mkfifo(tmp_path / "p")
    assert node_from_stat("p", os.lstat(tmp_path / "p"))["type"] == "fifo"


def test_same_file_rule(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"abc")
    node = node_from_stat("f", os.lstat(f))
    assert same_file(node, os.lstat(f))
    os.chmod(f, 0o600)  # ctime moves
    assert not same_file(node, os.lstat(f))


@pytest.fixture
def saver(tmp_path: Path):
    from cbr_agent.crypto import KdfParams
    from cbr_agent.repository import Repository

    repo = Repository.init(str(tmp_path / "repo"), "pw", kdf=KdfParams(n=1024),
                           chunker=ChunkerParams(min_size=4096, avg_size=16384, max_size=65536))
    writer = repo.writer()
    pool = BlobPool(writer, threads=2, budget=1 << 20)
    yield FileSaver(repo, writer, pool, should_stop=lambda: False), (repo, writer), pool
    pool.close()
    writer.close()


def _content(store, pool: BlobPool, ids: list[str]) -> bytes:
    repo, writer = store
    pool.drain()
    writer.flush()
    return b"".join(repo.load_blob(bytes.fromhex(i)) for i in ids)


def test_small_large_and_sparse_files_read_back(saver, tmp_path: Path) -> None:
    fs, writer, pool = saver
    small = tmp_path / "small"
    small.write_bytes(b"tiny")
    res = fs.save(str(small), os.lstat(small))
    assert len(res.content) == 1 and _content(writer, pool, res.content) == b"tiny"

    data = os.urandom(5_000_000)
    big = tmp_path / "big"
    big.write_bytes(data)
    res = fs.save(str(big), os.lstat(big))
    assert len(res.content) > 20 and _content(writer, pool, res.content) == data
    assert res.bytes_read == len(data) and not res.changed

    sparse = tmp_path / "sparse"
    with open(sparse, "wb") as fh:
        fh.write(b"a" * 10_000)
        fh.truncate(50_000_000)
    res = fs.save(str(sparse), os.lstat(sparse))
    assert res.size == 50_000_000 and res.bytes_read < 1_000_000
    assert _content(writer, pool, res.content) == b"a" * 10_000 + bytes(50_000_000 - 10_000)


def test_problems_are_file_problems(saver, tmp_path: Path) -> None:
    fs, _writer, _pool = saver
    f = tmp_path / "f"
    f.write_bytes(b"x")
    st = os.lstat(f)
    f.unlink()
    with pytest.raises(FileProblem, match="vanished"):
        fs.save(str(f), st)
    os.mkfifo(f)  # replaced by a FIFO after lstat: never opened for reading, never blocks
    with pytest.raises(FileProblem, match="changed type"):
        fs.save(str(f), st)
    os.unlink(f)
    os.symlink("/etc/hostname", f)
    with pytest.raises(FileProblem, match="changed type"):
        fs.save(str(f), st)
    assert stat.S_ISLNK(os.lstat(f).st_mode)


def test_password_sources(tmp_path: Path, monkeypatch) -> None:
    config = tmp_path / "conf" / "agent.toml"
    config.parent.mkdir()
    config.write_text("")
    monkeypatch.setenv("CBR_AGENT_CONFIG", str(config))
    monkeypatch.setenv("CBR_AGENT_STATE_DIR", str(tmp_path / "state"))
    settings = load_settings()
    assert resolve_password(settings) is None
    with pytest.raises(ConfigError, match="no repository password"):
        require_password(settings)
    password, path = generate_password_file(settings)
    assert path == tmp_path / "state" / "repository.password"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert resolve_password(settings) == password
    assert generate_password_file(settings)[0] == password  # never overwritten
    other = tmp_path / "pw"
    other.write_text("from-file\n")
    monkeypatch.setenv("CBR_AGENT_PASSWORD_FILE", str(other))
    assert resolve_password(load_settings()) == "from-file"
    monkeypatch.setenv("CBR_AGENT_PASSWORD", "from-env")
    assert resolve_password(load_settings()) == "from-env"
    monkeypatch.delenv("CBR_AGENT_PASSWORD")
    monkeypatch.setenv("CBR_AGENT_PASSWORD_FILE", str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="does not exist"):
        resolve_password(load_settings())
