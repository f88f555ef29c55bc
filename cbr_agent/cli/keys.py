"""``key list|add|remove|passwd``: several passwords per repository, rotation without re-encryption.

A new password comes from ``--new-password-file FILE``, else ``CBR_AGENT_NEW_PASSWORD``, else a prompt
on a terminal (typed twice); never from the command line.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from cbr_agent.cli.snapargs import open_repository

NEW_PASSWORD_ENV = "CBR_AGENT_NEW_PASSWORD"


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    from cbr_agent.cli.main import ArgumentParser

    p = subparsers.add_parser(
        "key", parents=[common], help="manage the repository's passwords (key files)",
        description="Each key file wraps the repository's master key with one password; adding, "
        "removing or changing one re-encrypts no data. The last key and the key in use are never "
        "removed. A new password comes from --new-password-file, CBR_AGENT_NEW_PASSWORD, or a prompt.")
    sub = p.add_subparsers(dest="key_command", metavar="ACTION", parser_class=ArgumentParser)
    p.set_defaults(func=lambda args: _usage(p))

    q = sub.add_parser("list", parents=[common], help="list the key files")
    q.add_argument("--json", action="store_true", help="print a JSON list")
    q.set_defaults(func=cmd_key_list)

    for name, helptext, func in (("add", "add a password", cmd_key_add),
                                 ("passwd", "change the password in use (new key, old one removed)",
                                  cmd_key_passwd)):
        q = sub.add_parser(name, parents=[common], help=helptext)
        q.add_argument("--new-password-file", metavar="FILE",
                       help=f"read the new password from FILE (else {NEW_PASSWORD_ENV}, else a prompt)")
        q.add_argument("--json", action="store_true", help="print the result as JSON")
        q.set_defaults(func=func)

    q = sub.add_parser("remove", parents=[common],
                       help="remove a key file (not the last, not the one in use)")
    q.add_argument("key_id", metavar="ID", help="key id or unique prefix (see 'key list')")
    q.add_argument("--json", action="store_true", help="print the result as JSON")
    q.set_defaults(func=cmd_key_remove)


def _usage(parser: argparse.ArgumentParser) -> int:
    from cbr_agent.errors import UsageError

    raise UsageError("key: name an action: list, add, remove or passwd", hint="see 'cbr-agent key --help'")


def read_new_password(args: argparse.Namespace) -> str:
    """The new password: file option, then environment, then a terminal prompt (twice)."""
    from cbr_agent.errors import ConfigError, UsageError

    if args.new_password_file:
        try:
            with open(args.new_password_file, encoding="utf-8") as fh:
                password = fh.read().rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read the new password file {args.new_password_file}: "
                              f"{getattr(exc, 'strerror', None) or exc}") from None
        if not password:
            raise UsageError(f"the new password file {args.new_password_file} is empty")
        return password
    password = os.environ.get(NEW_PASSWORD_ENV, "")
    if password:
        return password
    if not sys.stdin.isatty():
        raise UsageError("no new password given",
                         hint=f"set {NEW_PASSWORD_ENV}, pass --new-password-file FILE, or run on a terminal")
    import getpass

    first = getpass.getpass("new password: ")
    if not first:
        raise UsageError("an empty password is refused")
    if getpass.getpass("new password again: ") != first:
        raise UsageError("the two passwords differ; nothing was changed")
    return first


def cmd_key_list(args: argparse.Namespace) -> int:
    from cbr_agent.cli.output import print_json, print_table
    from cbr_agent.repository.keys import list_keys

    keys = list_keys(open_repository(args))
    if args.json:
        print_json([k.to_dict() for k in keys])
        return 0
    rows = [("*" if k.current else " ", k.id[:16], (k.created or "?")[:19].replace("T", " "), k.host or "?",
             k.kdf or f"damaged: {k.damaged}") for k in keys]
    print_table((" ", "ID", "CREATED", "HOST", "KDF"), rows)
    return 0


def cmd_key_add(args: argparse.Namespace) -> int:
    from cbr_agent.cli.output import print_json
    from cbr_agent.repository.keys import add_key

    repo = open_repository(args)
    name = add_key(repo, read_new_password(args))
    if args.json:
        print_json({"added": name})
    else:
        print(f"added key {name[:16]}")
    return 0


def cmd_key_remove(args: argparse.Namespace) -> int:
    from cbr_agent.cli.output import print_json
    from cbr_agent.repository.keys import remove_key

    name = remove_key(open_repository(args), args.key_id)
    if args.json:
        print_json({"removed": name})
    else:
        print(f"removed key {name[:16]}")
    return 0


def cmd_key_passwd(args: argparse.Namespace) -> int:
    from cbr_agent.cli.output import print_json
    from cbr_agent.repository.keys import change_password

    repo = open_repository(args)
    new, old = change_password(repo, read_new_password(args))
    if args.json:
        print_json({"added": new, "removed": old})
    else:
        print(f"password changed: added key {new[:16]}, removed key {old[:16]}")
    print(f"cbr-agent: warning: {_password_source(args)} still holds the old password; put the new one "
          "there, or backups will fail with 'wrong password'", file=sys.stderr)
    return 0


def _password_source(args: argparse.Namespace) -> Any:
    from cbr_agent.cli.context import settings_from_args
    from cbr_agent.repoaccess.password import default_password_file

    settings = settings_from_args(args)
    if settings.password:
        return "CBR_AGENT_PASSWORD"
    if settings.password_file:
        return f"the password file {settings.password_file}"
    return f"the password file {default_password_file(settings)}"
