"""Helpers for repository tests: a tiny honest "backup" of in-memory files through the public API."""

from __future__ import annotations

import io
from datetime import datetime, timedelta, timezone

from cbr_agent.chunking import ChunkerParams
from cbr_agent.crypto import KdfParams
from cbr_agent.repository import Repository, Snapshot, decode_tree, encode_tree

CHEAP_KDF = KdfParams(n=1024)
SMALL_CHUNKS = ChunkerParams(min_size=1024, avg_size=4096, max_size=16384)

Files = dict[str, bytes]  # "dir/name" -> content (one directory level is enough for these tests)


def init_repo(path, password: str = "pw", **kwargs) -> Repository:
    kwargs.setdefault("chunker", SMALL_CHUNKS)
    return Repository.init(str(path), password, kdf=CHEAP_KDF, **kwargs)


def store_files(
    repo: Repository,
    files: Files,
    *,
    when: datetime | None = None,
    pack_size: int = 64 * 1024,
    stats: dict | None = None,
) -> str:
    """Store files as one snapshot (root tree with one subtree per top-level dir); returns snapshot id.
    ``stats`` receives the writer's statistics."""
    chunker = repo.new_chunker()
    dirs: dict[str, list[dict]] = {}
    with repo.writer(pack_size=pack_size) as writer:
        for path, content in sorted(files.items()):
            top, _, name = path.rpartition("/")
            ids = []
            for chunk in chunker.chunks(io.BytesIO(content)):
                blob_id = repo.blob_id(chunk)
                writer.add(blob_id, chunk)
                ids.append(blob_id.hex())
            dirs.setdefault(top, []).append(
                {"name": name, "type": "file", "content": ids, "size": len(content)}
            )
        root_nodes = list(dirs.pop("", []))
        for top, nodes in sorted(dirs.items()):
            tree = encode_tree(nodes)
            tree_id = repo.blob_id(tree)
            writer.add(tree_id, tree, kind="tree")
            root_nodes.append({"name": top, "type": "dir", "subtree": tree_id.hex()})
        root = encode_tree(root_nodes)
        root_id = repo.blob_id(root)
        writer.add(root_id, root, kind="tree")
    if stats is not None:
        stats.update(writer.stats.to_dict())
    snap = Snapshot(
        time=when or datetime.now(timezone.utc), host="test-host", paths=["/data"], tree=root_id.hex()
    )
    return repo.save_snapshot(snap)


def chunk_ids(repo: Repository, files: Files) -> set[bytes]:
    chunker = repo.new_chunker()
    return {repo.blob_id(c) for data in files.values() for c in chunker.chunks(io.BytesIO(data))}


def read_files(repo: Repository, snapshot_id: str) -> Files:
    """Every file of a snapshot, loaded blob by blob (raises IntegrityError on damage)."""
    snap = repo.find_snapshot(snapshot_id)
    out: Files = {}
    stack = [("", snap.tree)]
    while stack:
        prefix, tree_hex = stack.pop()
        for node in decode_tree(repo.load_blob(bytes.fromhex(tree_hex))):
            path = f"{prefix}/{node['name']}" if prefix else node["name"]
            if node["type"] == "dir":
                stack.append((path, node["subtree"]))
            else:
                out[path] = b"".join(repo.load_blob(bytes.fromhex(h)) for h in node["content"])
    return out


def minutes_ago(n: int) -> datetime:
    return datetime.now(timezone.utc) - timedelta(minutes=n)
