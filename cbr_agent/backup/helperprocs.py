"""Helper processes for small files (:mod:`cbr_agent.procpool`): each runs
:func:`~cbr_agent.backup.smallbatch.prepare_batch` on the batches it is sent, so reading, hashing,
compressing and sealing many small files uses more than the one core a Python process gets for that kind
of work (per-file system calls and short library calls hold the GIL most of the time; measured: one
process stays at about 1 CPU-s per second on 200,000 tiny files).

A helper is started with the repository's blob codec (its keys and compression level, over the stdin
pipe), then answers ``(token, items, seal)`` batches with ``outcomes``. If a helper dies, the batches it
held are reported lost and the backup process reads them itself.
"""

from __future__ import annotations

import pickle
import sys
from collections.abc import Callable, Sequence
from typing import Any

from cbr_agent import compress, procpool
from cbr_agent.backup import filesaver, smallbatch
from cbr_agent.backup.smallbatch import prepare_batch
from cbr_agent.crypto import aead, keys
from cbr_agent.fs import longpath, nodes
from cbr_agent.fs.longpath import LongPaths
from cbr_agent.procpool import DEPTH, LOST, usable_cpus
from cbr_agent.repository import codec as blobcodec
from cbr_agent.repository.codec import BlobCodec

__all__ = ["CODE", "DEPTH", "LOST", "HelperPool", "init_message", "serve", "usable_cpus"]

CODE = procpool.code_fingerprint((smallbatch, filesaver, nodes, longpath, compress, aead, keys, blobcodec,
                                  sys.modules[__name__]))


def init_message(codec: BlobCodec, limit: int) -> tuple[str, bytes, int]:
    """What a helper is started with (over its stdin pipe, never argv or the environment): the codec is
    pickled on its own, so a helper checks the code fingerprint before it unpickles any class."""
    return (CODE, pickle.dumps(codec, protocol=procpool.PROTOCOL), limit)


class HelperPool(procpool.HelperPool):
    """``count`` small-file helpers of a backup, started with :func:`init_message`."""

    def __init__(self, count: int, init: tuple[str, bytes, int]) -> None:
        super().__init__(count, init, serve_module=__name__, role="backup")


# -- the helper's side ------------------------------------------------------------------------------------

def serve() -> None:
    procpool.serve_messages(CODE, "backup", _start)


def _start(init: tuple[Any, ...]) -> Callable[[Any], Sequence[Any]]:
    codec_pickle, limit = init
    codec = pickle.loads(codec_pickle)  # only once the code is known to be the same: it names a class
    if not isinstance(codec, BlobCodec):
        sys.stderr.write("the backup process sent no blob codec\n")
        sys.exit(procpool.WRONG_CODE)
    longpaths = LongPaths()  # this helper's own: descriptors are per process (closed when it exits)

    def handle(message: tuple[int, list[tuple[str, int]], bool]) -> Sequence[Any]:
        _token, items, seal = message
        return prepare_batch(items, limit, codec, longpaths, seal=seal)

    return handle
