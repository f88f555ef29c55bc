#!/usr/bin/env python3
"""A/B two cbr-agent checkouts on one step of the engine benchmark, in alternating pairs, under the
benchmark's conditions: the question "is this change faster?" in one command.

    python3 tests/bench/ab_engine.py --tree tiny --step first HEAD~1 HEAD
    python3 tests/bench/ab_engine.py --tree mixed --step unchanged --pairs 7 ../before .

A side is a checkout directory or a git revision of this repository (checked out into a temporary
worktree, removed at the end). Each pair runs both sides, A first in odd pairs and B first in even ones,
so that a slow minute of the machine or an order effect weighs on both. Every timed run starts as the
benchmark's do (bench_engine.py, tests/bench/README.md "Timing cautions"): page cache emptied, then the
source tree and the side's own repository and state read again; for the whole A/B, as root, the VM's
free page reporting and DAMON page-out are off (measure.steady_memory). Steps:

- ``first``: a first backup into a new repository (created untimed; deleted after the run: a few hundred
  pack files, too few to slow ext4 down);
- ``unchanged``: an unchanged re-run, on a repository and state made once per side (untimed);
- ``restore``: a restore of that repository's snapshot into a new directory, compared with the source
  afterwards (untimed: a faster side that restored less is a failure); the restored copies stay until the
  end (deleting them would slow every later run's file creation: bench_engine.AFTER_DELETE_S).

The report gives each run, then per side the medians (wall, CPU, peak RSS, repository size), the ratio
B/A of the medians, and the ratios of the pairs (min, median, max): on a machine whose speed drifts from
minute to minute the pairs' ratios are what to trust. The caller's ``CBR_AGENT_*`` variables are not
passed on; ``--env KEY=VALUE`` sets one for both sides.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchtools
import measure
import treegen

ROOT = Path(__file__).resolve().parents[2]
STEPS = ("first", "unchanged", "restore")
PASSWORD = "ab-engine-benchmark"


@dataclass
class Result:
    pair: int
    side: str         # "A" or "B"
    seconds: float
    cpu_s: float      # user + system, the tool and its helper processes
    peak_rss_mb: float
    repo_mb: float    # the repository's allocated size after the run
    ok: bool


class Side:
    """One checkout: its environment, and its repository and state under ``base``."""

    def __init__(self, label: str, checkout: Path, base: Path, settings: dict[str, str]) -> None:
        self.label, self.checkout, self.base, self.settings = label, checkout, base, settings
        base.mkdir(parents=True)
        (base / "agent.toml").write_text("# ab_engine.py: everything else comes from the environment\n")

    def env(self, repo: Path) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CBR_AGENT_")}
        env.update(self.settings)  # --env: the same for both sides
        env.update(CBR_AGENT_PASSWORD=PASSWORD, CBR_AGENT_REPOSITORY=str(repo),
                   CBR_AGENT_CONFIG=str(self.base / "agent.toml"), PYTHONPATH=str(self.checkout))
        return env

    def cli(self, state: Path, *args: str) -> list[str]:
        return [sys.executable, "-m", "cbr_agent", "--state-dir", str(state), *args]

    def untimed(self, repo: Path, state: Path, *args: str) -> None:
        # in the side's directory: ``-m`` puts the working directory first on sys.path, and another
        # checkout there (this repository's, when run from its root) would be the code that runs
        subprocess.run(self.cli(state, *args), env=self.env(repo), cwd=self.base, check=True,
                       capture_output=True, timeout=3600)


def resolve(spec: str, scratch: Path, name: str) -> tuple[Path, bool]:
    """A checkout directory as it is, or a git revision checked out into ``scratch``; True: a worktree."""
    path = Path(spec)
    if (path / "cbr_agent" / "__init__.py").is_file():
        return path.resolve(), False
    target = scratch / name
    done = subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(target), spec],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"ab_engine: {spec!r} is neither a checkout nor a git revision here: "
                         f"{done.stderr.strip()}")
    return target, True


def prepare(side: Side, step: str, source: Path) -> None:
    """What the timed runs of ``step`` start from: a repository with one backup (not for ``first``)."""
    if step == "first":
        return
    side.untimed(side.base / "repo", side.base / "state", "init")
    side.untimed(side.base / "repo", side.base / "state", "backup", str(source))


def timed(side: Side, step: str, source: Path, pair: int, timeout: float,
          expected: dict[str, str] | None) -> Result:
    repo, state, cwd = side.base / "repo", side.base / "state", side.base
    if step == "first":
        cwd = side.base / f"first-{pair}"
        repo, state = cwd / "repo", cwd / "state"
        side.untimed(repo, state, "init")
        cmd = side.cli(state, "backup", str(source))
    elif step == "unchanged":
        cmd = side.cli(state, "backup", str(source))
    else:
        target = side.base / f"restore-{pair}"
        target.mkdir()
        cmd = side.cli(state, "restore", "latest", "--target", str(target))
    measure.drop_caches()
    if step != "restore":
        measure.warm(source)
    for own in (repo, state):  # the side's own files, not the restored copies beside them
        measure.warm(own)
    m = measure.run_measured(cmd, env=side.env(repo), cwd=cwd, log=side.base / "log.txt", timeout=timeout)
    repo_mb = measure.disk_usage(repo)[0] / 1e6
    if step == "first":
        shutil.rmtree(cwd)
    ok = m.rc == 0 and not m.timed_out
    if ok and step == "restore" and expected is not None:
        problems = measure.compare(expected, measure.manifest(target / source.relative_to(source.anchor)))
        if problems:
            with open(side.base / "log.txt", "a") as log:
                log.write(f"restore {pair} differs from the source: {'; '.join(problems)}\n")
            ok = False
    return Result(pair, side.label, m.seconds, m.user_s + m.sys_s, m.peak_rss_mb, repo_mb, ok)


def summary(results: list[Result]) -> dict:
    by = {label: [r for r in results if r.side == label and r.ok] for label in "AB"}
    out: dict = {}
    for label, runs in by.items():
        if runs:
            out[label] = {key: statistics.median(getattr(r, key) for r in runs)
                          for key in ("seconds", "cpu_s", "peak_rss_mb", "repo_mb")}
    if len(out) == 2:
        out["B/A of medians"] = {key: out["B"][key] / out["A"][key] for key in out["A"]}
        pairs = {}
        for r in by["A"]:
            other = next((b for b in by["B"] if b.pair == r.pair), None)
            if other is not None:
                pairs[r.pair] = other.seconds / r.seconds
        if pairs:
            ratios = sorted(pairs.values())
            out["B/A time of pairs"] = {"min": ratios[0], "median": statistics.median(ratios),
                                        "max": ratios[-1], "pairs": len(ratios)}
    return out


def render(report: dict, results: list[Result]) -> str:
    lines = []
    for label in "AB":
        if label in report:
            r = report[label]
            runs = sum(x.side == label and x.ok for x in results)
            lines.append(f"{label}    median {r['seconds']:.2f} s  CPU {r['cpu_s']:.2f} s  "
                         f"peak RSS {r['peak_rss_mb']:.1f} MB  repository {r['repo_mb']:.1f} MB  "
                         f"({runs} runs)")
    if "B/A of medians" in report:
        m = report["B/A of medians"]
        line = (f"B/A  time {m['seconds']:.3f}  CPU {m['cpu_s']:.3f}  peak RSS {m['peak_rss_mb']:.3f}  "
                f"repository {m['repo_mb']:.3f}")
        p = report.get("B/A time of pairs")
        if p:
            line += (f"   time of the {p['pairs']} pairs: min {p['min']:.3f}, median {p['median']:.3f}, "
                     f"max {p['max']:.3f}")
        lines.append(line)
    return "\n".join(lines) or "nothing measured"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("a", help="side A: a checkout directory or a git revision")
    p.add_argument("b", help="side B: a checkout directory or a git revision")
    p.add_argument("--tree", choices=("mixed", "tiny"), default="tiny")
    p.add_argument("--step", choices=STEPS, default="first")
    p.add_argument("--pairs", type=int, default=5, help="alternating pairs (default 5)")
    p.add_argument("--scale", type=float, default=1.0, help="tree size factor (default 1.0)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--workdir", type=Path, default=Path("/tmp/cbr-bench"),
                   help="where the trees are (shared with bench_engine.py; default /tmp/cbr-bench)")
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds allowed per run")
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                   help="an environment setting for both sides, e.g. CBR_AGENT_BACKUP_PROCESSES=3 "
                        "(repeatable; the caller's CBR_AGENT_* variables are not passed on)")
    p.add_argument("--json", type=Path, help="write every run and the summary to this file")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = dict(item.split("=", 1) for item in args.env if "=" in item)
    if len(settings) != len(args.env):
        raise SystemExit("ab_engine: --env takes KEY=VALUE")
    root = args.workdir.resolve() / "trees" / f"{args.tree}-s{args.scale:g}-seed{args.seed}"
    root.parent.mkdir(parents=True, exist_ok=True)
    treegen.undo_change(root, root.parent / f"{root.name}.undo")  # a crashed benchmark's change, if any
    info = treegen.ensure_tree(root, args.tree, args.seed, args.scale)
    print(f"tree {args.tree}: {info.files} files, {info.bytes / 1e6:.1f} MB at {root}", flush=True)
    results: list[Result] = []
    worktrees: list[Path] = []
    scratch = Path(tempfile.mkdtemp(prefix="ab-engine-", dir=args.workdir))
    try:
        sides = []
        for label, spec in (("A", args.a), ("B", args.b)):
            checkout, is_worktree = resolve(spec, scratch, f"checkout-{label}")
            if is_worktree:
                worktrees.append(checkout)
            benchtools.compile_bytecode(checkout)  # an installed agent never compiles at start
            sides.append(Side(label, checkout, scratch / f"side-{label}", settings))
            print(f"{label}: {spec} ({checkout})", flush=True)
        for side in sides:
            prepare(side, args.step, root)
        expected = measure.manifest(root) if args.step == "restore" else None
        with measure.steady_memory(lambda line: print(line, flush=True)):
            for pair in range(1, args.pairs + 1):
                for side in (sides if pair % 2 else sides[::-1]):
                    r = timed(side, args.step, root, pair, args.timeout, expected)
                    results.append(r)
                    failed = "" if r.ok else f"  FAILED (see {side.base / 'log.txt'})"
                    print(f"[{time.strftime('%H:%M:%S')}] pair {pair} {r.side}  {r.seconds:7.2f} s  "
                          f"CPU {r.cpu_s:6.2f} s  peak RSS {r.peak_rss_mb:6.1f} MB  "
                          f"repository {r.repo_mb:7.1f} MB{failed}", flush=True)
    except KeyboardInterrupt:
        print("interrupted: reporting what was measured", flush=True)
    finally:
        for tree in worktrees:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)],
                           capture_output=True)
        with contextlib.suppress(OSError):
            shutil.rmtree(scratch)
    report = summary(results)
    print(render(report, results))
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                         "runs": [asdict(r) for r in results], "summary": report},
                                        indent=1))
    return 0 if results and all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
