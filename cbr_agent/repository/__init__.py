"""The repository: encrypted, deduplicating, content-addressed storage of blobs, trees and snapshots.

Public API (agreed in the engine interface): :class:`Repository`, :class:`BlobWriter`,
:class:`Snapshot`, :func:`encode_tree` / :func:`decode_tree`, :class:`ChunkerParams`, :class:`Chunker`.
"""

from __future__ import annotations

from cbr_agent.chunking import Chunker, ChunkerParams
from cbr_agent.repository.check import CheckReport, Problem
from cbr_agent.repository.prune import PruneReport
from cbr_agent.repository.repo import Repository
from cbr_agent.repository.snapshot import Snapshot
from cbr_agent.repository.tree import decode_tree, encode_tree
from cbr_agent.repository.writer import BlobWriter, WriterStats

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
