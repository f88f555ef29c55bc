"""Content-defined chunking (FastCDC 2020, pyfastcdc) with parameters recorded in the repository config."""

from __future__ import annotations

from cbr_agent.chunking.fastcdc import (
    DEFAULT_PARAMS,
    Chunker,
    ChunkerParams,
)

__all__ = ["DEFAULT_PARAMS", "Chunker", "ChunkerParams"]
