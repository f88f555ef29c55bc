"""Helper processes for restores of many small files (:mod:`cbr_agent.procpool`).

Restoring a tiny file is a handful of short system calls and some Python around each, all under the GIL:
threads do not add a core (measured on 200,000 files of 0-4 KiB: two threads took more time and half
again the CPU of one). So the restore process plans (walks the snapshot, creates directories, lists each
file's blobs) and hands whole batches to helper processes, which read the packs of a local repository,
decode the blobs and write and finish the files (:class:`~cbr_agent.restore.contents.ContentWriter`, the
code the threads run), answering with the files that failed or had metadata problems.

A batch sent to a helper travels as plain values: the restore process's own copy is untouched. If a
helper dies, the batch comes back lost; the restore process removes what the helper may have left of
its files (under their temporary names) and writes the batch itself (a file the helper already finished
is written again, the same bytes).
"""

from __future__ import annotations

import itertools
import pickle
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from cbr_agent import compress, procpool
from cbr_agent.crypto import aead, keys
from cbr_agent.fs import longpath
from cbr_agent.fs.longpath import LongPaths
from cbr_agent.repository import codec as blobcodec
from cbr_agent.repository.backend import DirectoryBackend
from cbr_agent.repository.codec import BlobCodec
from cbr_agent.restore import contents, metadata
from cbr_agent.restore.contents import ContentWriter, FileJob, Item, Wire, from_wire, to_wire

CODE = procpool.code_fingerprint((contents, metadata, longpath, compress, aead, keys, blobcodec,
                                  sys.modules[__name__]))

#: a file of a batch not simply restored, by its place among the batch's files: restored with these
#: metadata problems (a list), or failed for this reason (a str)
Outcome = tuple[int, "list[str] | str"]
#: a helper's answer: how many files it finished, and the outcomes of those not simply restored (every
#: other file of the batch was restored as planned)
Answer = tuple[int, list[Outcome]]
#: batches one helper holds: one being written, one waiting; the restore process writes the others itself
DEPTH = 2


def init_message(codec: BlobCodec, repository: str) -> tuple[str, bytes, str]:
    """What a helper is started with (over its stdin pipe): the codec is pickled on its own, so a helper
    checks the code fingerprint before it unpickles any class."""
    return (CODE, pickle.dumps(codec, protocol=procpool.PROTOCOL), repository)


class RestoreHelpers:
    """``count`` helpers writing batches from the local repository at ``repository``."""

    def __init__(self, count: int, codec: BlobCodec, repository: str) -> None:
        self._pool = procpool.HelperPool(count, init_message(codec, repository), serve_module=__name__,
                                         role="restore", depth=DEPTH)
        self._pending: dict[int, tuple[list[Item], list[FileJob]]] = {}
        self._tokens = itertools.count()

    def start(self) -> None:
        self._pool.start()

    def pids(self) -> list[int]:
        return self._pool.pids()

    @property
    def busy(self) -> bool:
        """Batches are out and not answered yet."""
        return bool(self._pending)

    def try_submit(self, items: list[Item]) -> bool:
        """Hand a batch to a helper with room for it; False: do it yourself."""
        token = next(self._tokens)
        jobs, wire = to_wire(items)
        self._pending[token] = (items, jobs)
        if self._pool.try_submit(token, (token, wire)):
            return True
        del self._pending[token]
        return False

    def answers(self, wait: float = 0.0) -> Iterator[tuple[list[Item], list[FileJob], Answer | None]]:
        """Answered batches as ``(items, jobs, answer)``, the answer None for a batch a dead helper held;
        with ``wait``, wait that long for the first."""
        for token, answer in self._pool.answers(wait):
            yield (*self._pending.pop(token), answer)

    def close(self) -> None:
        self._pool.close()


# -- the helper's side ------------------------------------------------------------------------------------

def serve() -> None:
    procpool.serve_messages(CODE, "restore", _start)


class _Collected:
    """The helper's reporter: the outcomes of the files not simply restored, by position."""

    def __init__(self) -> None:
        self.position: dict[int, int] = {}
        self.finished = 0
        self.outcomes: list[Outcome] = []

    def restored(self, job: FileJob, problems: list[str]) -> None:
        self.finished += 1
        if problems:
            self.outcomes.append((self.position[id(job)], problems))

    def failed(self, job: FileJob, reason: str) -> None:
        self.finished += 1
        self.outcomes.append((self.position[id(job)], reason))


def _start(init: tuple[Any, ...]) -> Callable[[Any], Answer]:
    codec_pickle, repository = init
    codec = pickle.loads(codec_pickle)  # only once the code is known to be the same: it names a class
    if not isinstance(codec, BlobCodec):
        sys.stderr.write("the restore process sent no blob codec\n")
        sys.exit(procpool.WRONG_CODE)
    backend = DirectoryBackend(Path(repository))
    collected = _Collected()

    def read_range(pack_id: str, offset: int, length: int) -> bytes:
        return backend.get("data/" + pack_id, offset, length)

    # this helper's own long-path descriptors: they are per process (closed when it exits)
    writer = ContentWriter(read_range, codec.decode, LongPaths().short, collected)

    def handle(message: tuple[int, Wire]) -> Answer:
        jobs, items = from_wire(message[1])
        collected.position = {id(job): i for i, job in enumerate(jobs)}
        collected.finished, collected.outcomes = 0, []
        for item in items:
            writer.run(item)
        return collected.finished, collected.outcomes

    return handle
