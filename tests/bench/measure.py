"""Running one timed command and measuring it; sizes, page-cache warming, manifests."""

from __future__ import annotations

import contextlib
import mmap
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import blake3


@dataclass
class Measurement:
    seconds: float
    rc: int
    user_s: float
    sys_s: float
    peak_rss_mb: float      # highest VmHWM of any single process of the tool's tree (polled /proc)
    tree_rss_mb: float      # highest sum of VmRSS over the whole process tree (polled)
    wait4_maxrss_mb: float  # ru_maxrss from wait4: NOT the tool's own peak, see README (kept for reference)
    timed_out: bool = False


def tree_pids(root: int) -> list[int]:
    """``root`` and its descendants, from /proc/PID/task/TID/children (cheap, unlike a scan of /proc)."""
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/children", "rb") as f:
                    todo.extend(int(c) for c in f.read().split())
            except OSError:
                pass
    return out


def peak_rss_kib(pid: int) -> int:
    """VmHWM of a running process: its peak RSS so far, in KiB."""
    return _status_kib(pid)[0]


def _status_kib(pid: int) -> tuple[int, int]:
    """(VmHWM, VmRSS) of ``pid`` in KiB; (0, 0) when it is gone or has no memory (a zombie)."""
    hwm = rss = 0
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmHWM:"):
                    hwm = int(line.split()[1])
                elif line.startswith(b"VmRSS:"):
                    rss = int(line.split()[1])
    except (OSError, ValueError):
        pass
    return hwm, rss


class _TreeRssPoller(threading.Thread):
    """Polls the tool's process tree: per-process VmHWM (the kernel's exact high-water mark of that
    process's memory since its exec, so only growth in the last interval before exit can be missed) and
    the sum of VmRSS over the tree.

    Why not wait4's ru_maxrss: Linux carries the pre-exec memory's high-water mark into it, so every child
    of this (large) benchmark process would report at least the benchmark's own peak.
    """

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.interval = interval
        self.hwm_kib: dict[int, int] = {}
        self.tree_peak_kib = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while True:
            self.sample()
            if self.stop.wait(self.interval):
                return

    def sample(self) -> None:
        total = 0
        for pid in tree_pids(self.pid):
            hwm, rss = _status_kib(pid)
            if hwm:
                self.hwm_kib[pid] = max(self.hwm_kib.get(pid, 0), hwm)
            total += rss
        self.tree_peak_kib = max(self.tree_peak_kib, total)

    @property
    def peak_kib(self) -> int:
        return max(self.hwm_kib.values(), default=0)


def run_measured(cmd: Sequence[str], *, env: Mapping[str, str], cwd: Path, log: Path,
                 timeout: float) -> Measurement:
    """Run ``cmd`` to completion; wall time, CPU time and peak RSS of it and its children.

    The child is reaped with os.wait4 (exact CPU times of it and every descendant it waited for); memory
    comes from polling /proc (see _TreeRssPoller). Output goes to ``log`` (not a pipe: nothing throttles
    the tool, and wait4 cannot deadlock).
    """
    timed_out = threading.Event()
    with open(log, "ab") as out:
        out.write(("$ " + " ".join(cmd) + "\n").encode())
        out.flush()
        start = time.perf_counter()
        proc = subprocess.Popen(list(cmd), env=dict(env), cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        poller = _TreeRssPoller(proc.pid)
        poller.start()

        def kill() -> None:
            timed_out.set()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)

        timer = threading.Timer(timeout, kill)
        timer.daemon = True
        timer.start()
        try:
            _pid, status, usage = os.wait4(proc.pid, 0)
            seconds = time.perf_counter() - start
        except BaseException:   # Ctrl-C: the tool runs in its own session, so stop it here
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            os.wait4(proc.pid, 0)
            proc.returncode = -signal.SIGKILL
            raise
        finally:
            timer.cancel()
            poller.stop.set()
            poller.join()
        proc.returncode = os.waitstatus_to_exitcode(status)   # Popen must not wait for it again
    return Measurement(
        seconds=seconds, rc=proc.returncode, user_s=usage.ru_utime, sys_s=usage.ru_stime,
        peak_rss_mb=poller.peak_kib * 1024 / 1e6, tree_rss_mb=poller.tree_peak_kib * 1024 / 1e6,
        wait4_maxrss_mb=usage.ru_maxrss * 1024 / 1e6,
        timed_out=timed_out.is_set())


def drop_caches() -> bool:
    """Empty the page cache (as root, where the kernel allows it), so that every timed step starts from
    the same memory state whatever the steps before it wrote; False when not allowed (nothing dropped)."""
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as fh:
            fh.write("3\n")
        return True
    except OSError:
        return False


#: free page reporting (virtio-balloon): free memory of this order and above goes back to the hypervisor
PAGE_REPORTING_ORDER = Path("/sys/module/page_reporting/parameters/page_reporting_order")
#: above the buddy allocator's largest order (10 on x86-64): no free block is reported
_NO_REPORTING_ORDER = "11"


@contextlib.contextmanager
def steady_memory(log: Callable[[str], None]) -> Iterator[str]:
    """Hold the guest's memory steady for the run: no free page handed back to the hypervisor, every free
    page touched once, and no page cache paged out behind the tools' backs. Yields what was done, for the
    report. Needs root; every setting is put back at exit (tests/bench/README.md, "Timing cautions").

    On a VM with free page reporting, each page freed (drop_caches before every step frees gigabytes)
    goes back to the host, and the next write into it costs a host fault: on the build VM, writes into
    such pages ran at 0.35-0.45 GB/s against 4.3-6 GB/s for recycled ones, so a step that writes a
    repository or a restore (0.7-1.1 GB) paid more or less depending on what the VM had handed back
    before it, a hidden variable of the machine and not of the tools. A DAMON ``pageout`` scheme (seen on
    another build VM: pages idle for a minute dropped, up to 128 MiB a second) evicts the page cache the
    benchmark warmed, so a step read from disk or not depending on how long it had waited."""
    with contextlib.ExitStack() as stack:
        done = [stack.enter_context(_no_page_reporting(log)), stack.enter_context(_no_damon_pageout(log))]
        yield "; ".join(done)


@contextlib.contextmanager
def _no_page_reporting(log: Callable[[str], None]) -> Iterator[str]:
    try:
        before = PAGE_REPORTING_ORDER.read_text().strip()
        PAGE_REPORTING_ORDER.write_text(_NO_REPORTING_ORDER)
    except OSError:
        yield "free page reporting left as it is (none here, or not root)"
        return
    try:
        t0 = time.monotonic()
        touched = touch_free_memory()
        done = (f"free page reporting off (page_reporting_order {before} -> {_NO_REPORTING_ORDER}), "
                f"{touched / 2**30:.1f} GiB of free memory touched in {time.monotonic() - t0:.0f} s")
        log(done)
        yield done
    finally:
        PAGE_REPORTING_ORDER.write_text(before)


#: DAMON's sysfs interface: each running kdamond with a scheme that evicts pages is stopped for the run
DAMON_KDAMONDS = Path("/sys/kernel/mm/damon/admin/kdamonds")
_EVICTING_ACTIONS = {"pageout", "lru_deprio", "cold"}


def evicting_kdamonds(root: Path = DAMON_KDAMONDS) -> list[Path]:
    """The running kdamonds (their directories) with at least one scheme that evicts or demotes pages."""
    found = []
    for kdamond in sorted(root.glob("[0-9]*")):
        try:
            if (kdamond / "state").read_text().strip() != "on":
                continue
            actions = {a.read_text().strip() for a in kdamond.glob("contexts/*/schemes/*/action")}
        except OSError:
            continue
        if actions & _EVICTING_ACTIONS:
            found.append(kdamond)
    return found


@contextlib.contextmanager
def _no_damon_pageout(log: Callable[[str], None]) -> Iterator[str]:
    stopped = []
    try:
        for kdamond in evicting_kdamonds():
            try:
                (kdamond / "state").write_text("off")
            except OSError:
                continue
            stopped.append(kdamond)
        done = (f"DAMON page-out off ({len(stopped)} kdamond{'s' if len(stopped) != 1 else ''})" if stopped
                else "no DAMON page-out running")
        if stopped:
            log(done)
        yield done
    finally:
        for kdamond in stopped:
            with contextlib.suppress(OSError):
                (kdamond / "state").write_text("on")


def touch_free_memory(margin: int = 2 << 30, chunk: int = 256 << 20) -> int:
    """Write one byte into every page of the free memory but ``margin``, all mapped at once so that no
    page is touched twice, then free it: the hypervisor backs each of them from then on."""
    free = _meminfo_kib("MemFree") * 1024 - margin
    maps = []
    try:
        for _ in range(max(0, free // chunk)):
            try:
                m = mmap.mmap(-1, chunk)
            except (OSError, MemoryError):  # something else took memory meanwhile: touch no more
                break
            maps.append(m)
            m[::mmap.PAGESIZE] = b"\1" * (chunk // mmap.PAGESIZE)
    finally:
        for m in maps:
            m.close()
    return len(maps) * chunk


def _meminfo_kib(field: str) -> int:
    with open("/proc/meminfo", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def warm(root: Path, *, skip: Path | None = None) -> int:
    """Read every file under ``root`` but ``skip`` (page cache and dentries hot, the same for every tool)."""
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    total = 0
    for dirpath, dirs, files in os.walk(root):
        if skip is not None:
            dirs[:] = [d for d in dirs if Path(dirpath, d) != skip]
        for name in files:
            path = os.path.join(dirpath, name)
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
            except OSError:
                continue
            try:
                while n := os.readv(fd, [view]):
                    total += n
            finally:
                os.close(fd)
    return total


def disk_usage(root: Path) -> tuple[int, int]:
    """(allocated bytes as `du` counts them, apparent bytes) of everything under ``root``."""
    allocated = apparent = 0
    seen: set[tuple[int, int]] = set()
    for dirpath, dirs, files in os.walk(root):
        for name in files + dirs:
            st = os.lstat(os.path.join(dirpath, name))
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            allocated += st.st_blocks * 512
            if name in files:
                apparent += st.st_size
    return allocated, apparent


def manifest(root: Path) -> dict[str, str]:
    """Relative path -> content digest for files, "dir" for directories, "link:<target>" for symlinks."""
    out: dict[str, str] = {}
    for dirpath, dirs, files in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        for name in dirs:
            full = os.path.join(dirpath, name)
            rel = os.path.normpath(os.path.join(rel_dir, name))
            out[rel] = "link:" + os.readlink(full) if os.path.islink(full) else "dir"
        for name in files:
            full = os.path.join(dirpath, name)
            rel = os.path.normpath(os.path.join(rel_dir, name))
            if os.path.islink(full):
                out[rel] = "link:" + os.readlink(full)
                continue
            h = blake3.blake3(max_threads=1)
            h.update_mmap(full) if os.path.getsize(full) else None
            out[rel] = h.hexdigest()
    return out


def compare(expected: Mapping[str, str], got: Mapping[str, str]) -> list[str]:
    """What differs between two manifests (empty when identical), at most a few lines."""
    problems = []
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    wrong = sorted(k for k in set(expected) & set(got) if expected[k] != got[k])
    for label, items in (("missing", missing), ("extra", extra), ("different", wrong)):
        if items:
            problems.append(f"{len(items)} {label}, e.g. {items[:3]}")
    return problems


def sync_and_settle(seconds: float) -> None:
    os.sync()
    if seconds > 0:
        time.sleep(seconds)
