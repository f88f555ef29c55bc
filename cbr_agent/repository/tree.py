"""Tree blobs: one directory listing each, canonical JSON so equal directories dedup to one blob.

Each node has ``name`` and ``type``; a directory has ``subtree`` (hex id of its tree blob), a regular file
``content`` (list of hex blob ids). Everything else belongs to the backup pipeline and is kept as given,
among it a directory's ``totals`` (:class:`Totals`): what its whole subtree holds, so that a backup that
reuses the subtree unopened still counts it in its summary (optional: trees of older versions lack it).
Names that are not valid UTF-8 arrive as surrogate-escaped ``str``; ``ensure_ascii`` keeps them intact.
"""

from __future__ import annotations

import functools
import itertools
import json
import operator
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, NamedTuple, Union, cast

import orjson

_FORMAT = 1
#: the key of a directory node's :class:`Totals`
TOTALS = "totals"


class Totals(NamedTuple):
    """What a directory's subtree holds: regular file entries (a hard link counts each time), their
    bytes, and directories (itself included)."""

    files: int
    bytes: int
    dirs: int

    def as_node_value(self) -> dict[str, int]:
        return {"files": self.files, "bytes": self.bytes, "dirs": self.dirs}


#: a mount point left out by one_file_system: its node holds an empty tree and counts as nothing
NO_TOTALS = Totals(0, 0, 0)


def totals_of(node: dict[str, Any]) -> Totals | None:
    """A directory node's totals, or None when it has none (or they are not three counts)."""
    value = node.get(TOTALS)
    if not isinstance(value, dict):
        return None
    counts = (value.get("files"), value.get("bytes"), value.get("dirs"))
    if not all(type(c) is int and c >= 0 for c in counts):
        return None
    return Totals(*counts)  # type: ignore[arg-type]


def tree_totals(nodes: Sequence[AnyNode]) -> Totals | None:
    """The totals of a directory that lists ``nodes``, or None when one of its subdirectories has none."""
    files = size = 0
    dirs = 1
    for node in nodes:
        if isinstance(node, EncodedNode):
            kind = node.type
            if kind == "file":
                files += 1
                size += node.size
                continue
            if kind != "dir":
                continue
            node = node.decode()
        kind = node.get("type")
        if kind == "file":
            files += 1
            size += node.get("size", 0)
        elif kind == "dir":
            sub = totals_of(node)
            if sub is None:
                return None
            files += sub.files
            size += sub.bytes
            dirs += sub.dirs
    return Totals(files, size, dirs)


def listing_totals(listing: EncodedListing, nodes: Sequence[AnyNode] | None = None) -> Totals | None:
    """:func:`tree_totals` of ``nodes`` once :func:`encode_listing` has encoded (and sorted) them (default:
    the listing's own): its files counted from the listing's columns, in C; only the subdirectories'
    nodes are read."""
    is_dir = map("dir".__eq__, listing.types)
    dirs: list[AnyNode]
    if nodes is None:
        dirs = list(map(decode_node, itertools.compress(listing.datas, is_dir)))
    else:
        dirs = list(itertools.compress(nodes, is_dir))
    below = tree_totals(dirs)
    if below is None:
        return None
    return Totals(below.files + listing.types.count("file"), below.bytes + sum(listing.sizes), below.dirs)


def canonical_json(doc: Any) -> bytes:
    """The canonical form: ``json.dumps(sort_keys, separators=(",", ":"), ensure_ascii)``. orjson writes
    the same bytes about 5x faster whenever its output is pure printable ASCII; anything else (non-ASCII or
    surrogate-escaped names, DEL, integers beyond 64 bits) takes the standard library's path."""
    try:
        out = orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)
        if out.isascii() and b"\x7f" not in out:
            return out
    except TypeError:  # orjson.JSONEncodeError: lone surrogates, huge integers
        pass
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


class EncodedNode(NamedTuple):
    """A node in its canonical JSON, as a tree holds it, with the few fields read of it without decoding
    it: an unchanged entry goes from the previous tree (by way of the files cache) into the new one as
    these bytes, neither decoded nor encoded again. Canonical JSON encodes each node on its own, so a
    tree is its nodes' bytes joined (:func:`tree_of`), the same bytes as :func:`canonical_json` of it."""

    name: str
    type: str
    inode: int | None
    size: int                   # a regular file's size (0 for anything else)
    blobs: str                  # a regular file's blob ids in hex, joined ("" for anything else)
    data: bytes

    @classmethod
    def of(cls, node: dict[str, Any]) -> EncodedNode:
        # copied to a bytes object of its own size: orjson's result for a small object keeps the kilobyte
        # it started writing into (1,066 bytes held for a 266-byte node)
        data = bytes(memoryview(canonical_json(node)))
        kind = node.get("type", "")
        if kind == "file":
            return cls(node["name"], kind, node.get("inode"), node.get("size", 0), _blob_ids(node), data)
        return cls(node["name"], kind, node.get("inode"), 0, "", data)

    def decode(self) -> dict[str, Any]:
        return decode_node(self.data)


def decode_node(data: bytes) -> dict[str, Any]:
    """One node from its canonical bytes."""
    try:
        node = orjson.loads(data)
    except orjson.JSONDecodeError:  # escaped lone surrogates (a name that is not UTF-8)
        node = json.loads(data)
    if not isinstance(node, dict):
        raise ValueError("an encoded tree node is not an object")
    return node


def _blob_ids(node: dict[str, Any]) -> str:
    """A file node's content blob ids, joined. In hex, as its bytes hold them: zstd finds them there
    and a files cache row costs them almost nothing (as 32 raw bytes each, rows were 4 MB larger and the
    200,000-file tree's 1 %-changed re-run peaked 5.7 MB higher)."""
    return "".join(node.get("content") or ())


#: a node as the walker hands it to a tree: decoded, or in its canonical bytes
AnyNode = Union[dict[str, Any], EncodedNode]  # noqa: UP007 (a runtime alias: X | Y needs both to be types)


def node_name(node: AnyNode) -> str:
    return node.name if isinstance(node, EncodedNode) else node["name"]


def node_type(node: AnyNode) -> str | None:
    return node.type if isinstance(node, EncodedNode) else node.get("type")


class EncodedListing(NamedTuple):
    """A directory's nodes in canonical form, sorted by name, column by column: each node's bytes (the
    tree blob is them joined, :func:`tree_of`) and the fields the files cache keeps beside them (see
    :class:`EncodedNode`)."""

    names: list[str]
    types: list[str]
    inodes: list[int | None]
    sizes: list[int]
    blobs: list[str]
    datas: list[bytes]

    # a few entries changed in a large listing: edited in place, column by column, with no object made
    # per entry that stays (see TreeAssembler.add_listing)
    def node_at(self, i: int) -> EncodedNode:
        return EncodedNode._make(column[i] for column in self._columns())

    def nodes(self) -> list[EncodedNode]:
        """Every node, in order, made in C (calling the class runs its ``__new__``, written in Python:
        a third more time to build a large directory's nodes)."""
        return list(map(_encoded_node, zip(*self, strict=True)))

    def put(self, i: int, node: EncodedNode) -> None:
        for column, value in zip(self._columns(), node, strict=True):
            column[i] = value

    def insert(self, i: int, node: EncodedNode) -> None:
        for column, value in zip(self._columns(), node, strict=True):
            column.insert(i, value)

    def delete(self, i: int) -> None:
        for column in self._columns():
            del column[i]

    def copy(self) -> EncodedListing:
        return EncodedListing(*(column[:] for column in self._columns()))

    def _columns(self) -> tuple[list[Any], ...]:
        return cast(tuple[list[Any], ...], tuple(self))


_by_name = operator.itemgetter("name")
_encoded_node = functools.partial(tuple.__new__, EncodedNode)
#: decoded nodes are encoded by orjson this many at a time (one call per block, see encode_listing)
_BLOCK = 512


def encode_listing(nodes: list[AnyNode]) -> EncodedListing:
    """Sort ``nodes`` (in place) and encode them (names must be unique). A listing of decoded nodes only
    (a first backup's, a scanned directory's) takes one orjson call per block of nodes, split into the
    nodes' bytes (:func:`split_array`): a call and a bytes object per node made encoding it 2.5 times
    slower than the one call for the whole tree of earlier versions, 2.2 against 0.9 us per node. A
    listing with encoded nodes encodes only its decoded ones."""
    if EncodedNode not in set(map(type, nodes)):
        dicts = cast(list[dict[str, Any]], nodes)
        dicts.sort(key=_by_name)
        datas: list[bytes] = []
        for i in range(0, len(dicts), _BLOCK):
            block = dicts[i:i + _BLOCK]
            datas += split_array(canonical_json(block), len(block))
        types = [node.get("type", "") for node in dicts]
        listing = EncodedListing(
            [node["name"] for node in dicts], types, [node.get("inode") for node in dicts],
            [node.get("size", 0) if kind == "file" else 0 for node, kind in zip(dicts, types, strict=True)],
            [_blob_ids(node) if kind == "file" else "" for node, kind in zip(dicts, types, strict=True)],
            datas)
    else:
        # mostly unchanged entries, in name order already (a listing's): only the decoded ones are
        # encoded, and the nodes are sorted only when their names are not in order
        columns = list(zip(*_encoded(nodes), strict=True))
        if list(columns[0]) != sorted(columns[0]):
            nodes.sort(key=node_name)
            columns = list(zip(*_encoded(nodes), strict=True))
        listing = EncodedListing(*map(list, columns))
    if len(set(listing.names)) != len(listing.names):
        dup = next(a for a, b in itertools.pairwise(listing.names) if a == b)
        raise ValueError(f"duplicate name in tree: {dup!r}")
    return listing


def _encoded(nodes: list[AnyNode]) -> list[EncodedNode]:
    return [n if type(n) is EncodedNode else EncodedNode.of(cast(dict[str, Any], n)) for n in nodes]


def split_array(array: bytes, count: int) -> list[bytes]:
    """The canonical bytes of each of the ``count`` nodes of a canonical JSON array of nodes, each a
    bytes object of its own size. Consecutive nodes always meet as ``},{"``, and no string holds those
    bytes (a quote in a string is escaped), so splitting there gives ``count`` pieces unless a node holds
    a list of objects; then the array is decoded and each node encoded on its own."""
    if count == 0:
        return []
    pieces = array[3:-2].split(b'},{"')
    if len(pieces) == count:
        return [b'{"' + piece + b"}" for piece in pieces]
    try:
        nodes = orjson.loads(array)
    except orjson.JSONDecodeError:  # escaped lone surrogates (a name that is not UTF-8)
        nodes = json.loads(array)
    return [EncodedNode.of(node).data for node in nodes]


_HEAD = b'{"nodes":['
_TAIL = b'],"v":%d}' % _FORMAT


def tree_of(listing: EncodedListing) -> bytes:
    """The tree blob of an encoded listing, made with one copy of the nodes' bytes (a tree of 20,000
    files is about 6 MB)."""
    datas: list[bytes] = listing.datas[:]
    if not datas:
        return _HEAD + _TAIL
    datas[0] = _HEAD + datas[0]
    datas[-1] = datas[-1] + _TAIL
    return b",".join(datas)


def encode_tree(nodes: Iterable[AnyNode]) -> bytes:
    """Deterministic bytes for a directory listing (nodes sorted by name; names must be unique)."""
    return tree_of(encode_listing(list(nodes)))


def decode_tree(data: bytes) -> list[dict[str, Any]]:
    """Inverse of :func:`encode_tree`; ValueError when the bytes are not a tree."""
    try:
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError:  # escaped lone surrogates (names that are not UTF-8)
            doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ValueError(f"not a tree blob: {type(exc).__name__}: {exc}") from None
    if not isinstance(doc, dict) or doc.get("v") != _FORMAT or not isinstance(doc.get("nodes"), list):
        raise ValueError("not a tree blob (format marker missing)")
    nodes = doc["nodes"]
    ids: list[Any] = []  # the references every walker follows: checked here, so no walker trips over them
    for node in nodes:
        if not isinstance(node, dict) or not isinstance(node.get("name"), str) or "type" not in node:
            raise ValueError("tree node without name or type")
        content = node.get("content")
        if content is not None:
            if not isinstance(content, list):
                raise ValueError(f"tree node {node['name']!r}: content is not a list")
            ids += content
        subtree = node.get("subtree")
        if subtree is not None:
            ids.append(subtree)
    if ids and not _all_blob_ids(ids):
        raise ValueError("tree refers to a blob by an id that is not 64 hex digits")
    return nodes


def _all_blob_ids(ids: list[Any]) -> bool:
    """Whether every item is a 64-digit hex string: two C-level passes over all of them (a Python call
    per id made decoding a tree four times slower; now about 0.3 us per node more than no check)."""
    try:
        joined = "".join(ids)  # TypeError unless all are strings
        # fromhex skips white space: count the bytes it made
        return set(map(len, ids)) == {64} and len(bytes.fromhex(joined)) == 32 * len(ids)
    except (TypeError, ValueError):
        return False


def referenced_blobs(nodes: list[dict[str, Any]]) -> Iterator[tuple[str, str, str]]:
    """``(node name, kind, hex id)`` of every blob a tree refers to directly."""
    for node in nodes:
        subtree = node.get("subtree")
        if subtree is not None:
            yield node["name"], "tree", subtree
        for blob in node.get("content") or ():
            yield node["name"], "data", blob
