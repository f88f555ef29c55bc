"""Snapshots: the record of one backup, pointing at its root tree."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any


@dataclass
class Snapshot:
    time: datetime
    host: str
    paths: list[str]
    tree: str  # hex id of the root tree blob
    agent_id: str | None = None
    excludes: dict[str, list[str]] = field(default_factory=dict)
    parent: str | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    #: the snapshot this one replaces (set when tags were changed: a new object, the old one deleted)
    original: str | None = None
    id: str | None = None

    @property
    def short_id(self) -> str:
        return (self.id or "")[:8]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (without the id, which is the name of the stored object)."""
        t = self.time if self.time.tzinfo else self.time.replace(tzinfo=timezone.utc)
        out: dict[str, Any] = {
            "time": t.isoformat(),
            "host": self.host,
            "agent_id": self.agent_id,
            "paths": list(self.paths),
            "excludes": {k: list(v) for k, v in self.excludes.items()},
            "tree": self.tree,
            "parent": self.parent,
            "summary": dict(self.summary),
            "tags": list(self.tags),
        }
        if self.original is not None:  # only when set: untouched snapshots encode as before
            out["original"] = self.original
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], id: str | None = None) -> Snapshot:
        return cls(
            time=datetime.fromisoformat(data["time"]),
            host=str(data["host"]),
            agent_id=data.get("agent_id"),
            paths=list(data.get("paths") or []),
            excludes={k: list(v) for k, v in (data.get("excludes") or {}).items()},
            tree=str(data["tree"]),
            parent=data.get("parent"),
            summary=dict(data.get("summary") or {}),
            tags=list(data.get("tags") or []),
            original=data.get("original"),
            id=id,
        )


def encode_snapshot(snapshot: Snapshot) -> bytes:
    return json.dumps(snapshot.to_dict(), sort_keys=True, ensure_ascii=True).encode("ascii")


def decode_snapshot(data: bytes, id: str | None = None) -> Snapshot:
    """Inverse of :func:`encode_snapshot`; ValueError when the bytes are not a well-formed snapshot (every
    field of the wrong type is refused here, so no later reader trips over it)."""
    try:
        doc = json.loads(data)
        _check_fields(doc)
        return Snapshot.from_dict(doc, id=id)
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        raise ValueError(f"not a snapshot: {type(exc).__name__}: {exc}") from None


def _is_str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _check_fields(doc: Any) -> None:
    if not isinstance(doc, dict):
        raise TypeError("not an object")
    tree = doc.get("tree")
    if not isinstance(tree, str) or len(tree) != 64 or any(c not in "0123456789abcdef" for c in tree):
        raise ValueError("root tree id is not 64 hex digits")
    if not isinstance(doc.get("time"), str) or not isinstance(doc.get("host"), str):
        raise TypeError("time or host is not a string")
    for key in ("agent_id", "parent"):
        if doc.get(key) is not None and not isinstance(doc[key], str):
            raise TypeError(f"{key} is not a string")
    for key in ("paths", "tags"):
        if doc.get(key) is not None and not _is_str_list(doc[key]):
            raise TypeError(f"{key} is not a list of strings")
    excludes = doc.get("excludes")
    if excludes is not None and not (
        isinstance(excludes, dict) and all(_is_str_list(v) for v in excludes.values())
    ):
        raise TypeError("excludes is not a map of string lists")
    if doc.get("summary") is not None and not isinstance(doc["summary"], dict):
        raise TypeError("summary is not an object")
