"""The ``cbr-agent`` command: argparse front end with one module per command group.

Command modules import only the standard library at module level, so that ``cbr-agent --help``
stays fast; each handler imports what it needs when it runs. A module exposes
``register(subparsers, common)`` which adds its subcommands with ``set_defaults(func=handler)``;
a handler takes the parsed ``argparse.Namespace`` and returns an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback
from collections.abc import Sequence

from cbr_agent import __version__

#: command group modules under cbr_agent.cli, in the order of ``--help``
COMMAND_MODULES: tuple[str, ...] = (
    "agent",      # register, run, status, uninstall
    "paths",      # path add/remove/list
    "repo",       # init, backup, snapshots, ls, restore, check, forget, prune
    "repair",     # repair index, repair snapshots
    "explore",    # find, diff, stats, dump
    "keys",       # key list/add/remove/passwd
    "tags",       # tag
    "copy",       # copy --from-repository
    "mount",      # mount (FUSE)
    "fleet",      # agents (the fleet view of a control plane)
    "server",     # the control-plane HTTP server
    "cbr",        # backups, tasks (the CBR view of the control plane)
    "generate",   # shell completions and the man page
)


#: the namespace attribute that holds the prog of the command being run ("cbr-agent path add")
COMMAND_PROG = "command_prog"


class ArgumentParser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so usage errors get our one-line form."""

    def error(self, message: str) -> None:  # type: ignore[override]
        from cbr_agent.errors import UsageError

        raise UsageError(f"{self.prog}: {message}", hint=f"see '{self.prog} --help'")

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[no-untyped-def,override]
        parsed, extras = super().parse_known_args(args, namespace)
        # the innermost (sub)command's parser finishes first: its prog names the command run, so a
        # usage error found later (an unknown option, a bad value in the handler) points to its --help
        if not hasattr(parsed, COMMAND_PROG):
            setattr(parsed, COMMAND_PROG, self.prog)
        return parsed, extras


def common_options() -> argparse.ArgumentParser:
    """Options accepted before or after any subcommand."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS,
                        help="configuration file (default /etc/cbr-agent/agent.toml as root, "
                        "~/.config/cbr-agent/agent.toml otherwise)")
    common.add_argument("--state-dir", metavar="DIR", default=argparse.SUPPRESS,
                        help="state directory")
    common.add_argument("--log-level", choices=("debug", "info", "warning", "error"),
                        default=argparse.SUPPRESS, help="log level (default info)")
    common.add_argument("--log-format", choices=("text", "json"), default=argparse.SUPPRESS,
                        help="log line format (default text)")
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show tracebacks and debug logs")
    common.add_argument("--version", action="version", version=f"cbr-agent {__version__}",
                        help="print the version and exit")
    return common


def build_parser() -> ArgumentParser:
    common = common_options()
    parser = ArgumentParser(
        prog="cbr-agent",
        parents=[common],
        description="File-backup agent for the Cloud Backup and Recovery (CBR) service.",
        epilog="Exit codes: 0 ok, 1 failure, 2 usage or configuration error, 3 done with warnings, "
        "4 control plane unreachable, 5 credentials refused, 6 not found, 10 no repository, "
        "11 repository locked, 12 wrong password, 130 interrupted.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=ArgumentParser)
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"cbr_agent.cli.{name}")
        module.register(subparsers, common)
    return parser


def run(argv: Sequence[str] | None = None) -> int:
    """Parse and run one command; every error becomes a one-line message and an exit code."""
    from cbr_agent.cli.exitcodes import exit_code_for
    from cbr_agent.errors import CbrAgentError, UsageError

    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    prog = "cbr-agent"
    try:
        parser = build_parser()
        args, extras = parser.parse_known_args(argv)
        prog = getattr(args, COMMAND_PROG, prog)
        if extras:
            raise UsageError(f"{prog}: unrecognized arguments: {' '.join(extras)}")
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        return int(args.func(args) or 0)
    except CbrAgentError as exc:
        if isinstance(exc, UsageError) and "hint" not in vars(exc):  # no hint of its own
            exc.hint = f"see '{prog} --help'"
        if debug:
            traceback.print_exc()
        print(f"cbr-agent: error: {exc}", file=sys.stderr)
        return exit_code_for(exc)
    except KeyboardInterrupt:
        print("cbr-agent: interrupted", file=sys.stderr)
        return exit_code_for(KeyboardInterrupt())
    except BrokenPipeError:
        return 1
    except Exception as exc:  # a bug: say so plainly, trace only with --debug
        if debug:
            traceback.print_exc()
        print(f"cbr-agent: internal error: {type(exc).__name__}: {exc} "
              "(rerun with --debug for a traceback and report it)", file=sys.stderr)
        return 1


def main() -> int:
    return run()
