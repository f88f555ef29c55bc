"""The repository: encrypted, deduplicating, content-addressed storage of blobs, trees and snapshots.

Public API (agreed in the engine interface): :class:`Repository`, :class:`BlobWriter`,
:class:`Snapshot`, :func:`encode_tree` / :func:`decode_tree`, :class:`ChunkerParams`, :class:`Chunker`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from cbr_agent.chunking import Chunker, ChunkerParams
from cbr_agent.repository.repo import Repository
from cbr_agent.repository.snapshot import Snapshot
from cbr_agent.repository.tree import decode_tree, encode_tree
from cbr_agent.repository.writer import BlobWriter, WriterStats

if TYPE_CHECKING:
    from cbr_agent.repository.check import CheckReport, Problem
    from cbr_agent.repository.prune import PruneReport

# imported when first asked for: a backup, a restore and every backup helper process start without
# check and prune (about 0.05 s of each start on the build machine)
_LAZY = {"CheckReport": "check", "Problem": "check", "PruneReport": "prune"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


__all__ = [
    "BlobWriter",
    "CheckReport",
    "Chunker",
    "ChunkerParams",
    "Problem",
    "PruneReport",
    "Repository",
    "Snapshot",
    "WriterStats",
    "decode_tree",
    "encode_tree",
]
