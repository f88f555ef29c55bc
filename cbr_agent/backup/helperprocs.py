"""Helper processes for small files: each runs :func:`~cbr_agent.backup.smallbatch.prepare_batch` on the
batches it is sent, so reading, hashing, compressing and sealing many small files uses more than the one
core a Python process gets for that kind of work (per-file system calls and short library calls hold
the GIL most of the time; measured: one process stays at about 1 CPU-s per second on 200,000 tiny files).

A helper is ``python -c <bootstrap> <package dir>``: it imports this very checkout or installation of
cbr-agent, reads its keys from its stdin pipe (never argv or the environment), then answers batches in
order. Messages are pickles both ways (both ends are this module). A helper exits when its stdin closes,
so one never outlives the backup process, even after kill -9. If a helper dies, the batches it held are
reported lost and the backup process reads them itself: a helper can only make a backup faster.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import pickle
import queue
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import blake3

from cbr_agent import __version__, compress
from cbr_agent.backup import filesaver, smallbatch
from cbr_agent.backup.smallbatch import prepare_batch
from cbr_agent.crypto import aead, keys
from cbr_agent.fs import longpath, nodes
from cbr_agent.fs.longpath import LongPaths
from cbr_agent.repository import codec as blobcodec
from cbr_agent.repository.codec import BlobCodec

log = logging.getLogger(__name__)

#: batches sent to one helper and not yet answered: enough that it never waits for the walker
DEPTH = 4
#: message token that carries the tokens of a dead helper's unanswered batches
LOST = -1

_BOOTSTRAP = ("import sys; sys.path.insert(0, sys.argv[1]); import cbr_agent; del sys.path[0]; "
              "from cbr_agent.backup.helperprocs import serve; serve()")
_PROTOCOL = pickle.HIGHEST_PROTOCOL


def _code_fingerprint() -> str:
    """Of the code a helper runs, as this process loaded it: a helper started after the package was
    upgraded on disk refuses to work for a backup process still running the old code."""
    digest = blake3.blake3(__version__.encode())
    modules = (smallbatch, filesaver, nodes, longpath, compress, aead, keys, blobcodec, sys.modules[__name__])
    for module in modules:
        try:
            digest.update(Path(module.__file__ or "").read_bytes())
        except OSError:  # not a plain file (a zip import): the version alone has to do
            digest.update(module.__name__.encode())
    return digest.hexdigest()


CODE = _code_fingerprint()


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


@dataclass(eq=False)
class _Helper:
    proc: subprocess.Popen[bytes]
    stderr: IO[bytes]
    inflight: set[int] = field(default_factory=set)
    dead: bool = False


def init_message(codec: BlobCodec, limit: int) -> tuple[str, bytes, int]:
    """What a helper is started with (over its stdin pipe, never argv or the environment): the codec is
    pickled on its own, so a helper checks the code fingerprint before it unpickles any class."""
    return (CODE, pickle.dumps(codec, protocol=_PROTOCOL), limit)


class HelperPool:
    """``count`` helper processes; answers arrive in :attr:`results` as ``(token, outcomes)``, or
    ``(LOST, [tokens])`` when a helper died holding those batches."""

    def __init__(self, count: int, init: Any) -> None:
        self.results: queue.Queue[tuple[int, Any]] = queue.Queue()
        self._init = init
        self._count = count
        self._lock = threading.Lock()
        self._helpers: list[_Helper] = []
        self._threads: list[threading.Thread] = []
        self._closing = False
        self._next = itertools.count()

    def start(self) -> None:
        package_dir = str(Path(__file__).resolve().parents[2])
        for i in range(self._count):
            stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed in close(), read if the helper dies
            try:
                proc = subprocess.Popen([sys.executable, "-c", _BOOTSTRAP, package_dir],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr)
            except BaseException:
                stderr.close()
                raise
            helper = _Helper(proc, stderr)
            self._helpers.append(helper)
            if not self._send(helper, self._init):
                self._report_death(helper)
                continue
            t = threading.Thread(target=self._read_loop, args=(helper,), name=f"helper-reader-{i}",
                                 daemon=True)
            t.start()
            self._threads.append(t)

    def try_submit(self, token: int, message: Any) -> bool:
        """Send a batch to a helper with room for it; False when none has (the caller does it itself).
        True also covers a batch whose helper died right away: it comes back as LOST."""
        start = next(self._next)
        n = len(self._helpers)
        for k in range(n):
            helper = self._helpers[(start + k) % n]
            with self._lock:
                if helper.dead or len(helper.inflight) >= DEPTH:
                    continue
                helper.inflight.add(token)
            if self._send(helper, message):
                return True
            with self._lock:
                mine = token in helper.inflight
                helper.inflight.discard(token)
            if not mine:
                return True  # the reader thread saw the death first and reported the batch lost
        return False

    def _send(self, helper: _Helper, message: Any) -> bool:
        stdin = helper.proc.stdin
        assert stdin is not None
        try:
            pickle.dump(message, stdin, protocol=_PROTOCOL)
            stdin.flush()
            return True
        except (OSError, ValueError):  # broken pipe: the helper is gone
            with self._lock:
                helper.dead = True
            return False

    def _read_loop(self, helper: _Helper) -> None:
        stdout = helper.proc.stdout
        assert stdout is not None
        try:
            while True:
                token, outcomes = pickle.load(stdout)
                with self._lock:
                    helper.inflight.discard(token)
                self.results.put((token, outcomes))
        except Exception:  # EOF, a broken stream: the helper is gone
            log.debug("backup helper %d: stream ended", helper.proc.pid, exc_info=True)
        with self._lock:
            helper.dead = True
            lost = sorted(helper.inflight)
            helper.inflight.clear()
            closing = self._closing
        if not closing:
            self._report_death(helper)
        if lost:
            self.results.put((LOST, lost))

    def _report_death(self, helper: _Helper) -> None:
        try:
            code = helper.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            code = None
        try:
            helper.stderr.seek(0)
            tail = helper.stderr.read()[-2000:].decode("utf-8", "replace").strip().splitlines()
        except (OSError, ValueError):  # closed meanwhile by close()
            tail = []
        log.warning("a backup helper process stopped (exit code %s)%s; the backup reads its files itself",
                    code, f": {tail[-1]}" if tail else "")

    def close(self) -> None:
        """Close every helper's stdin (it exits), wait a little, then kill what is left. Safe after a
        failed or partial :meth:`start`."""
        with self._lock:
            self._closing = True
        for helper in self._helpers:
            with contextlib.suppress(OSError, ValueError):
                assert helper.proc.stdin is not None
                helper.proc.stdin.close()
        for helper in self._helpers:
            try:
                helper.proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                helper.proc.kill()
                helper.proc.wait()
        for t in self._threads:
            t.join(timeout=2)
        for helper in self._helpers:
            helper.stderr.close()
            if helper.proc.stdout is not None:
                helper.proc.stdout.close()


# -- the helper's side ------------------------------------------------------------------------------------

def serve() -> None:
    """A helper's main loop: an init message ``(code fingerprint, pickled blob codec, limit)``, then
    ``(token, items, seal)`` batches, each answered with ``(token, outcomes)``, until stdin closes."""
    # Ctrl-C on a terminal and systemd's SIGTERM to the whole service are for the backup process to
    # handle: a helper leaves when its stdin closes, so that a stopping backup never sees helpers "die"
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    stdout = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # a stray print goes to stderr, never into the answers
    stdin = os.fdopen(0, "rb")
    try:
        code, codec_pickle, limit = pickle.load(stdin)
    except EOFError:
        return
    if code != CODE:
        sys.stderr.write("cbr-agent was upgraded while this backup ran: the helper's code differs from "
                         "the backup process's\n")
        sys.exit(3)
    codec = pickle.loads(codec_pickle)  # only once the code is known to be the same: it names a class
    if not isinstance(codec, BlobCodec):
        sys.stderr.write("the backup process sent no blob codec\n")
        sys.exit(3)
    with LongPaths() as longpaths:  # this helper's own: descriptors are per process anyway
        while True:
            try:
                token, items, seal = pickle.load(stdin)
            except EOFError:
                return
            outcomes: Sequence[Any] = prepare_batch(items, limit, codec, longpaths, seal=seal)
            try:
                pickle.dump((token, outcomes), stdout, protocol=_PROTOCOL)
                stdout.flush()
            except BrokenPipeError:  # the backup process is gone
                return
