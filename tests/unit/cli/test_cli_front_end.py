"""The argparse front end (issue 9, items 10 and 12): --version anywhere, usage errors that point to the
help of the command that was run, and the shared wording helpers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cbr_agent import __version__
from cbr_agent.cli.main import run
from cbr_agent.cli.output import plural, short_id


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
           "PYTHONPATH": str(Path(__file__).resolve().parents[3])}  # this checkout
    return subprocess.run([sys.executable, "-m", "cbr_agent", *args], capture_output=True, text=True,
                          env=env, timeout=60, cwd=tmp_path)


@pytest.mark.parametrize("args", [("--version",), ("status", "--version"), ("path", "list", "--version"),
                                  ("restore", "--version")])
def test_version_before_or_after_a_command(tmp_path: Path, args: tuple[str, ...]) -> None:
    proc = _cli(tmp_path, *args)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"cbr-agent {__version__}"


@pytest.mark.parametrize(("args", "help_of"), [
    (("restore", "latest", "--target", "/tmp/x", "--bogus"), "cbr-agent restore"),
    (("path", "add", "/srv", "--bogus"), "cbr-agent path add"),
    (("path", "exclude", "add", "/srv", "x", "--bogus"), "cbr-agent path exclude add"),
    (("forget",), "cbr-agent forget"),
    (("forget", "--keep-last", "x"), "cbr-agent forget"),
    (("--bogus",), "cbr-agent"),
])
def test_usage_errors_point_to_the_help_of_the_command_run(tmp_path: Path, capsys, args: tuple[str, ...],
                                                           help_of: str) -> None:
    code = run([*args, "--state-dir", str(tmp_path / "state")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip().endswith(f"(see '{help_of} --help')"), err
    assert len(err.strip().splitlines()) == 1


def test_plural_and_short_id() -> None:
    assert plural(1, "file") == "1 file" and plural(0, "file") == "0 files"
    assert plural(2, "entry", "entries") == "2 entries" and plural(1, "entry", "entries") == "1 entry"
    assert short_id("ab" * 32) == "abababab" and short_id(None) == ""
