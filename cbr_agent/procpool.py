"""Helper processes: work sent as pickles over pipes, for the per-file Python work one process cannot
spread over several cores (the backup's small files, the restore's tiny files).

A helper is ``python -c <bootstrap> <package dir> <module>``: it imports this very checkout or
installation of cbr-agent, runs ``<module>.serve()``, reads its keys from its stdin pipe (never argv or
the environment), then answers messages in order. Messages are pickles both ways (both ends are this
code). A helper exits when its stdin closes, so one never outlives the process that started it, even
after kill -9. If a helper dies, the messages it held are reported lost and the caller does that work
itself: a helper can only make a run faster.
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
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import IO, Any

import blake3

from cbr_agent import __version__

log = logging.getLogger(__name__)

#: messages sent to one helper and not yet answered: enough that it never waits for its feeder
DEPTH = 4
#: message token that carries the tokens of a dead helper's unanswered messages
LOST = -1
#: ``processes = "auto"``: past about four, the one process feeding the helpers is the limit
AUTO_PROCESSES_MAX = 4
#: a helper's exit code when it was started for other code than it finds on disk
WRONG_CODE = 3

_BOOTSTRAP = ("import sys; sys.path.insert(0, sys.argv[1]); import cbr_agent, importlib; del sys.path[0]; "
              "importlib.import_module(sys.argv[2]).serve()")
PROTOCOL = pickle.HIGHEST_PROTOCOL


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def helper_count(processes: int | str) -> int:
    """Helpers for a run allowed ``processes`` processes in all (``auto``: one per usable CPU, at most
    :data:`AUTO_PROCESSES_MAX`): that many less the run's own process."""
    if processes == "auto":
        return min(AUTO_PROCESSES_MAX, usable_cpus()) - 1
    return int(processes) - 1


def code_fingerprint(modules: Iterable[ModuleType]) -> str:
    """Of the code a helper runs, as this process loaded it: a helper started after the package was
    upgraded on disk refuses to work for a process still running the old code."""
    digest = blake3.blake3(__version__.encode())
    for module in (*modules, sys.modules[__name__]):
        try:
            digest.update(Path(module.__file__ or "").read_bytes())
        except OSError:  # not a plain file (a zip import): the version alone has to do
            digest.update(module.__name__.encode())
    return digest.hexdigest()


@dataclass(eq=False)
class _Helper:
    proc: subprocess.Popen[bytes]
    stderr: IO[bytes]
    inflight: set[int] = field(default_factory=set)
    dead: bool = False


class HelperPool:
    """``count`` helper processes running ``serve_module``'s ``serve()``; answers arrive in
    :attr:`results` as ``(token, answer)``, or ``(LOST, [tokens])`` when a helper died holding those
    messages. ``init`` is the first message of every helper: ``(code fingerprint, ...)``. ``role``
    names the run in log lines ("backup", "restore"); ``depth``: messages one helper may hold."""

    def __init__(self, count: int, init: Any, *, serve_module: str, role: str, depth: int = DEPTH) -> None:
        self.results: queue.Queue[tuple[int, Any]] = queue.Queue()
        self._init = init
        self._count = count
        self._serve_module = serve_module
        self._role = role
        self._depth = depth
        self._lock = threading.Lock()
        self._helpers: list[_Helper] = []
        self._threads: list[threading.Thread] = []
        self._closing = False
        self._next = itertools.count()

    def start(self) -> None:
        package_dir = str(Path(__file__).resolve().parents[1])
        for i in range(self._count):
            stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed in close(), read if the helper dies
            try:
                proc = subprocess.Popen([sys.executable, "-c", _BOOTSTRAP, package_dir, self._serve_module],
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

    def pids(self) -> list[int]:
        return [h.proc.pid for h in self._helpers]

    def try_submit(self, token: int, message: Any) -> bool:
        """Send a message (``(token, ...)``) to a helper with room for it; False when none has (the
        caller does the work itself). True also covers a message whose helper died right away: it comes
        back as LOST."""
        start = next(self._next)
        n = len(self._helpers)
        for k in range(n):
            helper = self._helpers[(start + k) % n]
            with self._lock:
                if helper.dead or len(helper.inflight) >= self._depth:
                    continue
                helper.inflight.add(token)
            if self._send(helper, message):
                return True
            with self._lock:
                mine = token in helper.inflight
                helper.inflight.discard(token)
            if not mine:
                return True  # the reader thread saw the death first and reported the message lost
        return False

    def answers(self, wait: float = 0.0) -> Iterator[tuple[int, Any]]:
        """The answers that arrived, as ``(token, answer)``, the answer None for each message a dead
        helper held; with ``wait``, wait that long for the first."""
        while True:
            try:
                token, payload = self.results.get(timeout=wait) if wait else self.results.get_nowait()
            except queue.Empty:
                return
            wait = 0.0
            if token == LOST:
                for lost in payload:
                    yield lost, None
            else:
                yield token, payload

    def _send(self, helper: _Helper, message: Any) -> bool:
        stdin = helper.proc.stdin
        assert stdin is not None
        try:
            pickle.dump(message, stdin, protocol=PROTOCOL)
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
                token, answer = pickle.load(stdout)
                with self._lock:
                    helper.inflight.discard(token)
                self.results.put((token, answer))
        except Exception:  # EOF, a broken stream: the helper is gone
            log.debug("%s helper %d: stream ended", self._role, helper.proc.pid, exc_info=True)
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
        log.warning("a %s helper process stopped (exit code %s)%s; the %s does its work itself",
                    self._role, code, f": {tail[-1]}" if tail else "", self._role)

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

def serve_messages(code: str, role: str, start: Callable[[tuple[Any, ...]], Callable[[Any], Any]]) -> None:
    """A helper's main loop: the init message ``(code fingerprint, *rest)``, ``start(rest)`` gives the
    handler, then each message ``(token, ...)`` is answered with ``(token, handler(message))`` until
    stdin closes."""
    # Ctrl-C on a terminal and systemd's SIGTERM to the whole service are for the main process to
    # handle: a helper leaves when its stdin closes, so that a stopping run never sees helpers "die"
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    stdout = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # a stray print goes to stderr, never into the answers
    stdin = os.fdopen(0, "rb")
    try:
        init = pickle.load(stdin)
    except EOFError:
        return
    if init[0] != code:
        sys.stderr.write(f"cbr-agent was upgraded while this {role} ran: the helper's code differs from "
                         f"the {role} process's\n")
        sys.exit(WRONG_CODE)
    handle = start(tuple(init[1:]))
    # messages are read ahead by a thread: the sender never blocks on a full pipe while this helper works
    # (a restore's batch is far larger than a pipe's buffer), so the sender can do other work meanwhile
    inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
    threading.Thread(target=_read_ahead, args=(stdin, inbox), name="inbox", daemon=True).start()
    while (message := inbox.get()) is not None:
        answer = handle(message)
        try:
            pickle.dump((message[0], answer), stdout, protocol=PROTOCOL)
            stdout.flush()
        except BrokenPipeError:  # the main process is gone
            return
    # every answer is flushed and nothing else is held: leave without the interpreter's teardown, which
    # took 30-35 ms here, all of it on the backup's or restore's clock (its pool waits for the helpers)
    sys.stderr.flush()
    os._exit(0)


def _read_ahead(stdin: IO[bytes], inbox: queue.SimpleQueue[Any]) -> None:
    try:
        while True:
            inbox.put(pickle.load(stdin))
    except EOFError:
        pass
    except Exception as exc:  # a broken stream: answer nothing more (the main process redoes the rest)
        sys.stderr.write(f"cannot read a message: {exc}\n")
    inbox.put(None)
