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
    try:
        return Snapshot.from_dict(json.loads(data), id=id)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"not a snapshot: {type(exc).__name__}: {exc}") from None
