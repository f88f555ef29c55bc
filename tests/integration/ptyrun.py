"""Run a real ``cbr-agent`` subprocess with a pseudo-terminal as its stdin and/or stderr, as a person at a
terminal would, and collect what it showed there (stdout stays a pipe, as when piped into a tool)."""

from __future__ import annotations

import contextlib
import os
import pty
import select
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass
class PtyResult:
    returncode: int
    stdout: str      # the pipe
    terminal: str    # everything written to the terminal (stderr when it is the tty, and input echo)
    stderr: str      # the pipe, when stderr is not the terminal


def run_cli(args: Sequence[str], *, env: dict[str, str], stdin_tty: bool = False, stderr_tty: bool = True,
            answer: str | None = None, timeout: float = 60.0) -> PtyResult:
    """``python -m cbr_agent ARGS`` with the terminal on stdin (``stdin_tty``) and/or stderr
    (``stderr_tty``); ``answer`` is typed once the program has written something to the terminal."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "cbr_agent", *args], env=env,
        stdin=slave if stdin_tty else subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=slave if stderr_tty else subprocess.PIPE, start_new_session=True)
    os.close(slave)
    pipes: dict[str, bytes] = {}

    def drain(name: str, stream) -> None:
        pipes[name] = stream.read()

    readers = [threading.Thread(target=drain, args=("stdout", proc.stdout))]
    if not stderr_tty:
        readers.append(threading.Thread(target=drain, args=("stderr", proc.stderr)))
    for t in readers:
        t.start()
    shown = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.05)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: every holder of the terminal's other side is gone
                    break
                if not chunk:
                    break
                shown += chunk
                if answer is not None:
                    os.write(master, answer.encode())
                    answer = None
            elif proc.poll() is not None:
                break
        else:
            proc.kill()
            raise AssertionError(f"cbr-agent {' '.join(args)} did not finish within {timeout} s")
        proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        with contextlib.suppress(OSError):
            os.close(master)
        for t in readers:
            t.join(timeout=10)
    return PtyResult(proc.returncode, pipes.get("stdout", b"").decode(errors="replace"),
                     shown.decode(errors="replace"), pipes.get("stderr", b"").decode(errors="replace"))
