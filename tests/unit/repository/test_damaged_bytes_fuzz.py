"""Every parser of stored bytes, fed truncated and bit-flipped objects: the damage is a typed error from
cbr_agent.errors that names the damaged object, never an internal error (struct.error, IndexError,
KeyError, UnicodeDecodeError, orjson errors...), which would escape these tests as themselves.

Two layers are fuzzed: the stored (sealed) bytes as a bad disk or a bad copy damages them, and the
plaintext inside a valid seal (what a writer bug would store), so the decoders behind the authentication
are exercised too.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cbr_agent.crypto import verify_key_file
from cbr_agent.errors import CbrAgentError, IntegrityError
from cbr_agent.repository import Repository, Snapshot, decode_tree
from cbr_agent.repository.check import run_check
from cbr_agent.repository.objects import AAD_CONFIG, AAD_INDEX, AAD_PACK_HEADER, AAD_SNAPSHOT, content_name
from cbr_agent.repository.pack import TAIL
from cbr_agent.repository.repair import repair_snapshots
from cbr_agent.repository.snapshot import decode_snapshot
from cbr_agent.repository.tree import referenced_blobs
from tests.unit.repository.repo_helpers import init_repo, store_files

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FEW = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class Stored:
    """One small repository and the names of one object of each kind in it."""

    def __init__(self, root: Path) -> None:
        self.repo = init_repo(root)
        self.sid = store_files(self.repo, {f"d{i % 2}/f{i}": os.urandom(1500 + 300 * i) for i in range(6)},
                               pack_size=4096)
        self.root = root
        self.pack = sorted(p for p, _ in self.repo.backend.list("data"))[0]
        self.index_file = sorted(n for n, _ in self.repo.backend.list("index"))[0]
        self.key_file = sorted(n for n, _ in self.repo.backend.list("keys"))[0]

    def path(self, name: str) -> Path:
        if name.startswith("data/"):
            return self.root / "data" / name[5:7] / name[5:]
        return self.root / name

    def damaged(self, name: str, data: bytes, action: Callable[[], Any]) -> Any:
        """Run ``action`` with object ``name`` replaced by ``data``; the original is put back after."""
        path = self.path(name)
        original = path.read_bytes()
        path.write_bytes(data)
        try:
            return action()
        finally:
            path.write_bytes(original)


@pytest.fixture(scope="module")
def stored(tmp_path_factory) -> Stored:
    return Stored(tmp_path_factory.mktemp("fuzz") / "repo")


def damage(data: bytes) -> st.SearchStrategy[bytes]:
    """Truncations (to 0..len-1 bytes), 1-4 flipped bytes, or both."""
    def flip(changes: list[tuple[int, int]]) -> bytes:
        out = bytearray(data)
        for pos, mask in changes:
            out[pos % len(out)] ^= mask
        return bytes(out)

    truncated = st.integers(0, len(data) - 1).map(lambda n: data[:n])
    flipped = st.lists(st.tuples(st.integers(0, len(data) - 1), st.integers(1, 255)), min_size=1, max_size=4)
    both = st.tuples(flipped.map(flip), st.integers(0, len(data))).map(lambda t: t[0][: t[1]])
    return st.one_of(truncated, flipped.map(flip), both).filter(lambda b: b != data)


def named(action: Callable[[], Any], name: str) -> Any:
    """The result of ``action``, or the CbrAgentError it raised, which must name ``name``."""
    try:
        return action()
    except CbrAgentError as exc:
        assert name in str(exc), f"{exc!s} does not name {name}"
        return exc


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=70),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


# ---------------------------------------------------------------------------------------------- packs
@FUZZ
@given(data=st.data())
def test_damaged_pack_is_named(stored: Stored, data: st.DataObject) -> None:
    repo, pack = stored.repo, stored.pack
    original = stored.path("data/" + pack).read_bytes()
    bad = data.draw(damage(original))
    result = stored.damaged("data/" + pack, bad, lambda: named(lambda: repo.read_pack_header(pack, len(bad)),
                                                              f"pack {pack}"))
    if not isinstance(result, CbrAgentError):  # the damage missed the header: it must still be right
        assert result == repo.read_pack_header(pack, len(original))


@FEW
@given(data=st.data())
def test_check_names_a_damaged_pack(stored: Stored, data: st.DataObject) -> None:
    repo, pack = stored.repo, stored.pack
    bad = data.draw(damage(stored.path("data/" + pack).read_bytes()))
    read_data = data.draw(st.booleans())
    report = stored.damaged("data/" + pack, bad, lambda: run_check(repo, read_data=read_data))
    assert not report.ok or not read_data  # --read-data sees every change of a pack
    assert all(pack in str(p) for p in report.errors if p.object.startswith("pack") or p.pack), report.errors


@FUZZ
@given(data=st.data())
def test_pack_header_plaintext_damage_is_named(stored: Stored, data: st.DataObject) -> None:
    repo = stored.repo
    original = stored.path("data/" + stored.pack).read_bytes()
    (hlen,) = TAIL.unpack(original[-4:])
    body, sealed = original[: -4 - hlen], original[-4 - hlen : -4]
    plain = repo.key.sealer.open(sealed, AAD_PACK_HEADER)
    bad = data.draw(damage(plain) | st.binary(max_size=200))
    header = repo.key.sealer.seal(bad, AAD_PACK_HEADER)
    pack = body + header + TAIL.pack(len(header))
    pack_id = content_name(pack)
    repo.backend.put("data/" + pack_id, pack)
    try:
        result = named(lambda: repo.read_pack_header(pack_id, len(pack)), f"pack {pack_id}")
        if not isinstance(result, CbrAgentError):
            assert all(e.offset + e.length <= len(body) for e in result)
    finally:
        repo.backend.delete("data/" + pack_id)


# ---------------------------------------------------------------------------------------------- index
@FUZZ
@given(data=st.data())
def test_damaged_index_file_is_named(stored: Stored, data: st.DataObject) -> None:
    repo, name = stored.repo, stored.index_file
    bad = data.draw(damage(stored.path("index/" + name).read_bytes()))
    result = stored.damaged("index/" + name, bad, lambda: named(lambda: repo.read_index_file(name),
                                                               f"index file index/{name}"))
    assert isinstance(result, IntegrityError)


@FUZZ
@given(data=st.data())
def test_index_plaintext_damage_is_named(stored: Stored, data: st.DataObject) -> None:
    repo = stored.repo
    plain = repo.key.sealer.open(stored.path("index/" + stored.index_file).read_bytes(), AAD_INDEX)
    bad = data.draw(damage(plain) | st.binary(max_size=200))
    sealed = repo.key.sealer.seal(bad, AAD_INDEX)
    name = content_name(sealed)
    repo.backend.put("index/" + name, sealed)
    try:
        named(lambda: repo.read_index_file(name), f"index file index/{name}")
        other = Repository(repo.backend, repo.key, repo.config)
        other.load_index()  # a damaged index file is skipped and remembered, never fatal
        assert name in other.index_files or name in other.damaged_index_files
    finally:
        repo.backend.delete("index/" + name)


# ---------------------------------------------------------------------------------------------- snapshots
@FUZZ
@given(data=st.data())
def test_damaged_snapshot_is_named(stored: Stored, data: st.DataObject) -> None:
    repo, sid = stored.repo, stored.sid
    bad = data.draw(damage(stored.path("snapshots/" + sid).read_bytes()))
    result = stored.damaged("snapshots/" + sid, bad, lambda: named(lambda: repo.load_snapshot(sid),
                                                                  f"snapshot {sid}"))
    assert isinstance(result, IntegrityError)


@FUZZ
@given(data=st.data())
def test_snapshot_plaintext_damage_is_named_and_harmless(stored: Stored, data: st.DataObject) -> None:
    repo = stored.repo
    plain = repo.key.sealer.open(stored.path("snapshots/" + stored.sid).read_bytes(), AAD_SNAPSHOT)
    doc = json.loads(plain)
    garbage = st.dictionaries(st.sampled_from(sorted(doc)), json_values, max_size=3).map(
        lambda changes: json.dumps({**doc, **changes}).encode())
    bad = data.draw(damage(plain) | garbage | json_values.map(lambda v: json.dumps(v).encode()))
    sealed = repo.key.sealer.seal(bad, AAD_SNAPSHOT)
    sid = content_name(sealed)
    repo.backend.put("snapshots/" + sid, sealed)
    try:
        result = named(lambda: repo.load_snapshot(sid), f"snapshot {sid}")
        if isinstance(result, Snapshot):  # it decoded: every reader must cope with it
            result.to_dict()
        report = run_check(repo)
        assert all(sid in str(p) for p in report.errors), report.errors
    finally:
        repo.backend.delete("snapshots/" + sid)


# ---------------------------------------------------------------------------------------------- trees
tree_docs = st.fixed_dictionaries({"v": st.just(1), "nodes": st.lists(
    st.dictionaries(st.sampled_from(["name", "type", "subtree", "content", "size"]), json_values,
                    max_size=5), max_size=3)})


@FUZZ
@given(data=st.data())
def test_tree_decoder_refuses_damage_with_value_error_only(stored: Stored, data: st.DataObject) -> None:
    repo = stored.repo
    root = repo.load_blob(bytes.fromhex(repo.find_snapshot(stored.sid).tree))
    bad = data.draw(damage(root) | tree_docs.map(lambda d: json.dumps(d).encode())
                    | st.binary(max_size=100) | st.just(b"[" * 5000 + b"]" * 5000))
    try:
        nodes = decode_tree(bad)
    except ValueError:
        return
    for _name, _kind, blob_hex in referenced_blobs(nodes):  # what decoded can be followed
        assert len(bytes.fromhex(blob_hex)) == 32


@pytest.fixture(scope="module")
def tree_repo(tmp_path_factory) -> Repository:
    return init_repo(tmp_path_factory.mktemp("trees") / "repo")


@FEW
@given(data=st.data())
def test_check_and_repair_name_a_malformed_tree(tree_repo: Repository, data: st.DataObject) -> None:
    repo = tree_repo
    bad = data.draw(tree_docs.map(lambda d: json.dumps(d).encode()) | st.binary(max_size=100))
    tree_id = repo.blob_id(bad)
    with repo.writer() as writer:
        writer.add(tree_id, bad, kind="tree")
    sid = repo.save_snapshot(Snapshot(datetime.now(timezone.utc), "h", ["/x"], tree_id.hex()))
    try:
        report = run_check(repo)
        assert all(sid in str(p) and tree_id.hex() in str(p) for p in report.errors), report.errors
        repaired = repair_snapshots(repo, dry_run=True)
        assert [a.snapshot for a in repaired.actions] == ([] if report.ok else [sid])
    finally:
        repo.forget_snapshot(sid)


# ---------------------------------------------------------------------------------------------- keys, config
@FUZZ
@given(data=st.data())
def test_damaged_key_file_is_named(stored: Stored, data: st.DataObject) -> None:
    name = stored.key_file
    bad = data.draw(damage(stored.path("keys/" + name).read_bytes()))
    with contextlib.suppress(IntegrityError):  # a flip in JSON white space may leave it valid
        verify_key_file(bad)
    result = stored.damaged("keys/" + name, bad,
                            lambda: named(lambda: Repository.open(str(stored.root), "pw"), f"keys/{name}"))
    assert isinstance(result, (Repository, CbrAgentError))


@FUZZ
@given(data=st.data())
def test_damaged_config_is_named(stored: Stored, data: st.DataObject) -> None:
    bad = data.draw(damage(stored.path("config").read_bytes()))
    result = stored.damaged("config", bad, lambda: named(lambda: Repository.open(str(stored.root), "pw"),
                                                        "config"))
    assert isinstance(result, (Repository, CbrAgentError))


@FUZZ
@given(data=st.data())
def test_config_plaintext_damage_is_named(stored: Stored, data: st.DataObject) -> None:
    repo = stored.repo
    head = json.loads(stored.path("config").read_bytes())
    plain = repo.key.sealer.open(base64.b64decode(head["sealed"]), AAD_CONFIG)
    doc = json.loads(plain)
    garbage = st.dictionaries(st.sampled_from(sorted(doc)), json_values, min_size=1, max_size=3).map(
        lambda changes: json.dumps({**doc, **changes}).encode())
    bad = data.draw(damage(plain) | garbage)
    head["sealed"] = base64.b64encode(repo.key.sealer.seal(bad, AAD_CONFIG)).decode()
    result = stored.damaged("config", json.dumps(head).encode(),
                            lambda: named(lambda: Repository.open(str(stored.root), "pw"), "config"))
    assert isinstance(result, (Repository, CbrAgentError))


def test_plain_decoders_raise_value_error_only() -> None:
    """The decoders below the repository (their callers turn ValueError into a named IntegrityError)."""
    for raw in (b"", b"\xff\xfe", b"[]", b'{"time": 1}', b"[" * 100_000, b'{"tree": "' + b"a" * 64 + b'"}'):
        with pytest.raises(ValueError):
            decode_snapshot(raw)
        with pytest.raises(ValueError):
            decode_tree(raw)
