"""FastCDC chunker over pyfastcdc.

pyfastcdc's stream chunker hands out memoryviews into one reused buffer, valid only until the next chunk
is requested; :meth:`Chunker.chunks` therefore copies each chunk into ``bytes`` so it can safely go to
another thread. The cut-point search itself runs without the GIL.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from pyfastcdc import FastCDC

KiB = 1024
MiB = 1024 * KiB

# pyfastcdc's own bounds on the three sizes
_MIN_RANGE = (64, 1 * MiB)
_AVG_RANGE = (256, 4 * MiB)
_MAX_RANGE = (1 * KiB, 16 * MiB)


class ReadableInto(Protocol):
    """What :meth:`Chunker.chunks` reads from: a binary file, or anything with its ``readinto``."""

    def readinto(self, b: memoryview, /) -> int: ...


@dataclass(frozen=True)
class ChunkerParams:
    """Chunk sizes in bytes. Files smaller than ``min_size`` are one chunk, so small files cost one blob."""

    min_size: int = 512 * KiB
    avg_size: int = 1 * MiB
    max_size: int = 8 * MiB
    normalization: int = 1
    algorithm: str = "fastcdc2020"

    def __post_init__(self) -> None:
        if self.algorithm != "fastcdc2020":
            raise ValueError(f"unknown chunker algorithm {self.algorithm!r}")
        for name, value, (lo, hi) in (
            ("min_size", self.min_size, _MIN_RANGE),
            ("avg_size", self.avg_size, _AVG_RANGE),
            ("max_size", self.max_size, _MAX_RANGE),
        ):
            if not lo <= value <= hi:
                raise ValueError(f"chunker {name} {value} is outside [{lo}, {hi}]")
        if not self.min_size <= self.avg_size <= self.max_size:
            raise ValueError("chunker sizes must satisfy min_size <= avg_size <= max_size")
        if self.avg_size & (self.avg_size - 1):
            raise ValueError("chunker avg_size must be a power of two")
        if not 0 <= self.normalization <= 3:
            raise ValueError("chunker normalization must be 0..3")

    def to_dict(self) -> dict[str, Any]:
        return {
            "algorithm": self.algorithm,
            "min_size": self.min_size,
            "avg_size": self.avg_size,
            "max_size": self.max_size,
            "normalization": self.normalization,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ChunkerParams:
        return cls(
            min_size=int(data["min_size"]),
            avg_size=int(data["avg_size"]),
            max_size=int(data["max_size"]),
            normalization=int(data.get("normalization", 1)),
            algorithm=str(data.get("algorithm", "fastcdc2020")),
        )


DEFAULT_PARAMS = ChunkerParams()
#: the read size of :meth:`Chunker.chunks`; a cut needs ``max_size`` bytes in view only when no
#: content-defined cut was found first, so most blocks leave little behind. 2 MiB against 4: the same
#: speed, about 3 MiB less peak memory re-reading changed large files (2026-12-07, ten A/B pairs)
STREAM_BLOCK = 2 * MiB


class Chunker:
    """Splits byte streams at content-defined boundaries.

    ``seed`` (from the repository key) permutes the gear table so chunk boundaries depend on a secret.
    One Chunker may be shared by threads: each call builds its own iterator state.
    """

    def __init__(self, params: ChunkerParams = DEFAULT_PARAMS, *, seed: int = 0) -> None:
        if not 0 <= seed < 2**63:
            raise ValueError("chunker seed must be in [0, 2**63)")
        self.params = params
        self._cdc = FastCDC(
            avg_size=params.avg_size,
            min_size=params.min_size,
            max_size=params.max_size,
            normalized_chunking=params.normalization,  # type: ignore[arg-type]  # 0-3, checked above
            seed=seed,
        )

    def chunks(self, stream: ReadableInto, size_hint: int | None = None, *,
               block_size: int = STREAM_BLOCK) -> Iterator[bytes]:
        """Chunks of a readable binary stream, each copied into its own ``bytes``.

        Read in blocks of ``block_size`` (plus the uncut rest of the previous block) into one buffer
        reused from block to block, so a stream holds about one block, not the ``2 * max_size`` buffer
        of pyfastcdc's own stream reader (16 MiB with the default sizes, per file being read), and a
        large file costs one allocation, not one zero-filled block per read. ``size_hint`` (the
        size from stat) keeps the buffer of a file smaller than a block that small. Boundaries are
        those of :meth:`chunks_of_file`."""
        for view in self.chunks_of_file(stream, size_hint, block_size=block_size, reuse=True):
            yield bytes(view)

    def chunks_of_file(
        self, f: ReadableInto, size_hint: int | None = None, *, block_size: int | None = None,
        reuse: bool = False,
    ) -> Iterator[memoryview]:
        """Chunks of a file, read in large blocks, as zero-copy views.

        Each block is a fresh buffer that is never written again once chunks of it are handed out, so the
        views stay valid for as long as anyone references them and may go to other threads uncopied (a
        view keeps its whole block alive: budget memory by blocks, about ``2 * max_size`` each). With
        ``reuse`` the next block is read into the same buffer: a view is then valid only until the next
        one is asked for (what :meth:`chunks` does, copying each). File reads and the cut-point search
        run without the GIL; only a chunk that straddles two blocks is copied. Boundaries equal those of
        :meth:`chunks`: a cut is taken only with ``max_size`` bytes (or EOF) in view. ``size_hint`` (the
        size from stat) keeps allocations small for small files; ``block_size`` (default 16 MiB) is for
        tests and tuning.
        """
        max_size = self.params.max_size
        avg_size = self.params.avg_size
        block = block_size or max(8 * MiB, 2 * max_size)
        cap = block if size_hint is None else max(1, min(block, size_hint + 1))
        rest: bytes = b""
        eof = False
        buf = bytearray()
        while not eof:
            need = len(rest) + cap
            if not reuse or len(buf) < need:
                # room for the usual rest (an unfinished chunk, most often under avg_size) beside a block
                buf = bytearray(need if not reuse or cap < block else max(need, block + 2 * avg_size))
            buf[: len(rest)] = rest
            view = memoryview(buf)[:need]
            filled = len(rest)
            while filled < need:
                n = f.readinto(view[filled:])
                if not n:
                    eof = True
                    break
                filled += n
            start = 0
            for chunk in self._cdc.cut_buf(view[:filled]):
                end = chunk.offset + chunk.length
                # A cut is final when more data could not move it: max_size bytes were in view, or the
                # gear hash cut before the end of the buffer with at least avg_size bytes in view (FastCDC
                # only looks at bytes before the cut, and switches masks at avg_size).
                if (
                    not eof
                    and chunk.offset + max_size > filled
                    and (end >= filled or filled - chunk.offset < avg_size)
                ):
                    break
                yield chunk.data
                start = end
            rest = bytes(view[start:filled])
            cap = block

    def chunks_of_buffer(self, buf: bytes | bytearray | memoryview) -> Iterator[memoryview]:
        """Zero-copy chunks of an in-memory buffer (views into ``buf``; keep ``buf`` alive while used)."""
        for chunk in self._cdc.cut_buf(buf):
            yield chunk.data

    def cut_points(self, buf: bytes | bytearray | memoryview) -> list[int]:
        """End offsets of the chunks of ``buf`` (for tests and diagnostics)."""
        return [chunk.offset + chunk.length for chunk in self._cdc.cut_buf(buf)]
