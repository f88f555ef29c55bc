"""Durations on the command line (``--retry-lock 30s``): ``90s``, ``5m``, ``1h30m``, ``2d`` or plain
seconds (``0`` = do not wait)."""

from __future__ import annotations

import argparse
import re

_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"(?:\d+(?:\.\d+)?[smhd])+")
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhd])")


def parse_duration(text: str) -> float:
    """Seconds; ValueError names the expected form."""
    value = text.strip().lower()
    if re.fullmatch(r"\d+(?:\.\d+)?", value):
        return float(value)
    if _DURATION.fullmatch(value):
        return float(sum(float(n) * _UNIT_SECONDS[u] for n, u in _PART.findall(value)))
    raise ValueError(f"'{text}' is not a duration like '30s', '5m', '1h30m' or a number of seconds")


def duration_arg(text: str) -> float:
    """An argparse ``type=``: a bad value is one usage line."""
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_retry_lock(parser: argparse.ArgumentParser, prefix: str = "") -> None:
    parser.add_argument("--retry-lock", type=duration_arg, default=0.0, metavar="DURATION",
                        help=prefix + "when the repository is locked, try again for this long (e.g. 30s, "
                        "5m) before exiting 11 (default: exit at once)")
