"""What every command handler needs first: the resolved settings and logging."""

from __future__ import annotations

import argparse
from typing import Any

from cbr_agent.config import Settings, load_settings
from cbr_agent.logs import setup_logging


def settings_from_args(args: argparse.Namespace, *, config_must_exist: bool = True,
                       **overrides: Any) -> Settings:
    """Resolve the configuration with the command line on top, and set up logging from it.

    ``overrides`` are command-specific flags (``endpoint=args.endpoint`` ...); ``None`` means unset.
    ``config_must_exist=False``: a ``--config`` file that does not exist yet reads as empty.
    """
    flags: dict[str, Any] = {
        "state_dir": getattr(args, "state_dir", None),
        "log_level": "debug" if getattr(args, "debug", False) else getattr(args, "log_level", None),
        "log_format": getattr(args, "log_format", None),
    }
    flags.update(overrides)
    settings = load_settings(config_file=getattr(args, "config", None), overrides=flags,
                             config_must_exist=config_must_exist)
    setup_logging(settings.log_level, settings.log_format)
    return settings
