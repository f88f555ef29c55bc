"""What the daemon's file change journal costs and saves (a measurement, not a test).

Generates the ``tiny`` benchmark tree (200,000 files in about 8,000 directories, treegen.py) under
``--workdir``, runs ``cbr-agent run`` on it as a real subprocess (embedded control plane, a repository in
its state dir, ``backup_schedule`` = ``--interval``) and reports:

- the inotify watches the daemon holds, its RSS and its CPU use while idle between backups;
- the time of an unchanged scheduled backup with the journal, of one after 1 % of the files changed
  (treegen's change), and of an unchanged one as a full scan (the first backup after a daemon restart
  is always a full scan).

    python3 tests/bench/bench_journal.py --workdir /tmp/journal-bench [--scale 1.0] [--idle 20]

The machine's load changes the figures: run it when the machine is quiet and read them as indicative.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

import benchtools  # noqa: E402
import treegen  # noqa: E402

from cbr_agent.agent.journal import inotify_watches  # noqa: E402


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class Daemon:
    def __init__(self, work: Path, interval: str) -> None:
        self.state = work / "state"
        config = work / "agent.toml"
        config.write_text("")
        self.env = {**os.environ, "PYTHONPATH": str(ROOT), "CBR_AGENT_CONFIG": str(config),
                    "CBR_AGENT_STATE_DIR": str(self.state), "CBR_AGENT_BACKUP_SCHEDULE": interval,
                    "CBR_AGENT_HEARTBEAT_INTERVAL": "60"}
        self.log = work / "daemon.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def cli(self, *args: str) -> str:
        return subprocess.run([sys.executable, "-m", "cbr_agent", *args], env=self.env, check=True,
                              capture_output=True, text=True).stdout

    def start(self) -> int:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "cbr_agent", "run"], env=self.env,
                                         stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        return self.proc.pid

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)

    def last_backup(self) -> dict[str, Any]:
        try:
            return json.loads((self.state / "agent-state.json").read_text()).get("last_backup") or {}
        except (OSError, ValueError):
            return {}

    def next_backup(self, after: str | None, timeout: float = 3600) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            last = self.last_backup()
            if last.get("snapshot_id") and last["snapshot_id"] != after:
                return last
            if last.get("status") == "failed":
                raise SystemExit(f"backup failed: {last.get('error')}")
            time.sleep(0.2)
        raise SystemExit("no backup within the timeout")


def idle(pid: int, seconds: float) -> dict[str, float]:
    cpu0, t0 = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    cpu1, t1 = cpu_seconds(pid), time.monotonic()
    return {"idle_cpu_percent": round(100 * (cpu1 - cpu0) / (t1 - t0), 3), "rss_mib": round(rss_mib(pid), 1),
            "inotify_watches": inotify_watches(pid)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--scale", type=float, default=1.0, help="of the 200,000-file tree")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--idle", type=float, default=20.0, help="seconds of idle CPU measurement")
    parser.add_argument("--interval", default="", help="backup_schedule (default: idle + 10 s)")
    args = parser.parse_args()
    work = args.workdir.resolve()
    benchtools.compile_bytecode()
    tree = work / "tiny"
    info = treegen.ensure_tree(tree, "tiny", args.seed, args.scale)
    print(f"tree: {info.files} files, {info.bytes} bytes under {tree}", flush=True)
    run = work / "run"
    if run.exists():
        import shutil

        shutil.rmtree(run)
    run.mkdir(parents=True)
    daemon = Daemon(run, args.interval or f"{int(args.idle) + 10}s")
    daemon.cli("path", "add", str(tree))
    results: dict[str, Any] = {"files": info.files}
    try:
        # watching alone: no schedule, so no backup runs and nothing else fills the daemon's memory
        daemon.env["CBR_AGENT_BACKUP_SCHEDULE"] = ""
        pid = daemon.start()
        started = time.monotonic()
        last, steady = -1, 0.0
        while steady < 1.0:  # the watches are set up in the daemon's journal thread: until they stop growing
            time.sleep(0.1)
            watches = inotify_watches(pid)
            steady = steady + 0.1 if watches == last and watches > 0 else 0.0
            last = watches
        results["watching_started_s"] = round(time.monotonic() - started - 1.0, 2)
        results["idle_watching_only"] = idle(pid, min(args.idle, 10))
        print(f"watching only: {results['idle_watching_only']} (ready after "
              f"{results['watching_started_s']} s)", flush=True)
        daemon.stop()
        daemon.env["CBR_AGENT_BACKUP_SCHEDULE"] = args.interval or f"{int(args.idle) + 10}s"
        pid = daemon.start()
        first = daemon.next_backup(None)
        print(f"first backup: {first.get('duration')} s ({first.get('scan')})", flush=True)
        results["idle"] = idle(pid, args.idle)
        print(f"idle: {results['idle']}", flush=True)
        journal = daemon.next_backup(first["snapshot_id"])
        results["unchanged_journal"] = {k: journal.get(k) for k in ("duration", "scan")}
        results["unchanged_journal"]["dirs_scanned"] = journal["summary"]["dirs_scanned"]
        print(f"unchanged, journal: {results['unchanged_journal']}", flush=True)
        undo = work / "undo"
        change = treegen.apply_change(tree, args.seed, undo)  # 1 %: appended, rewritten, added files
        try:
            changed = daemon.next_backup(journal["snapshot_id"])
        finally:
            treegen.undo_change(tree, undo)
        results["changed_1pct_journal"] = {k: changed.get(k) for k in ("duration", "scan")}
        results["changed_1pct_journal"]["dirs_scanned"] = changed["summary"]["dirs_scanned"]
        results["changed_1pct_journal"]["files_changed"] = len(change.appended) + len(change.rewritten)
        print(f"1 % changed, journal: {results['changed_1pct_journal']}", flush=True)
        after_undo = daemon.next_backup(changed["snapshot_id"])  # the undo, with the journal too
        daemon.stop()
        daemon.start()  # a restart: the next backup is a full scan
        full = daemon.next_backup(after_undo["snapshot_id"])
        results["unchanged_full"] = {k: full.get(k) for k in ("duration", "scan")}
        results["unchanged_full"]["dirs_scanned"] = full["summary"]["dirs_scanned"]
        print(f"unchanged, full scan: {results['unchanged_full']}", flush=True)
    finally:
        daemon.stop()
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
