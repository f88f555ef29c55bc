"""``generate bash|zsh|man``: shell completions and the man page, generated from the parser itself, so
they always list exactly the commands and options this version has. The packages install them."""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

FILE_METAVARS = {"FILE", "PATH", "P", "URL", "DIR", "MOUNTPOINT"}


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser(
        "generate", parents=[common], help="print shell completions or the man page",
        description="Print a bash or zsh completion script, or the cbr-agent(1) man page in roff, "
        "generated from this version's commands and options. The packages install all three.")
    p.add_argument("what", choices=("bash", "zsh", "man"), help="what to print")
    p.set_defaults(func=cmd_generate)


def cmd_generate(args: argparse.Namespace) -> int:
    import sys

    from cbr_agent.cli.main import build_parser

    root = describe(build_parser())
    text = {"bash": bash_completion, "zsh": zsh_completion, "man": man_page}[args.what](root)
    sys.stdout.write(text)
    return 0


# ---------------------------------------------------------------------------------------------- model
@dataclass
class Option:
    flags: list[str]
    help: str
    takes_value: bool
    metavar: str = ""
    choices: list[str] = field(default_factory=list)
    repeatable: bool = False

    @property
    def is_file(self) -> bool:
        return self.metavar in FILE_METAVARS or self.metavar.endswith("FILE")


@dataclass
class Command:
    path: list[str]  # [] for cbr-agent itself, ["key", "add"] ...
    help: str
    description: str
    options: list[Option]
    positionals: list[Option]
    children: list[Command] = field(default_factory=list)

    @property
    def name(self) -> str:
        return " ".join(["cbr-agent", *self.path])

    def walk(self) -> Iterator[Command]:
        yield self
        for child in self.children:
            yield from child.walk()


def _clean(text: str | None) -> str:
    return re.sub(r"\s+", " ", (text or "").replace("%%", "%")).strip()


def describe(parser: argparse.ArgumentParser, path: list[str] | None = None, help_text: str = "",
             common: set[str] | None = None) -> Command:
    """The parser as plain data; options shared by every command (``common``) only on the root."""
    path = path or []
    options, positionals, children = [], [], []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, sub in action.choices.items():
                children.append(describe(sub, [*path, name], _clean(helps.get(name)), common))
            continue
        if isinstance(action, argparse._HelpAction):
            continue
        if action.option_strings:
            if common is not None and path and set(action.option_strings) <= common:
                continue
            takes = action.nargs != 0
            metavar = action.metavar if isinstance(action.metavar, str) else (
                action.dest.upper() if takes else "")
            options.append(Option(list(action.option_strings), _clean(action.help), takes, metavar or "",
                                  [str(c) for c in action.choices or ()],
                                  isinstance(action, argparse._AppendAction)))
        else:
            metavar = action.metavar if isinstance(action.metavar, str) else action.dest.upper()
            positionals.append(Option([], _clean(action.help), True, metavar,
                                      [str(c) for c in action.choices or ()],
                                      action.nargs in ("*", "+")))
    command = Command(path, help_text, _clean(parser.description), options, positionals, children)
    if common is None and not path:  # the root: learn which options every command shares
        shared = {f for o in options for f in o.flags} - {"--version"}
        return describe(parser, path, help_text, shared)
    return command


def _shared(root: Command) -> list[Option]:
    """The root's options that every command accepts too (all but --version)."""
    return [o for o in root.options if "--version" not in o.flags]


# ---------------------------------------------------------------------------------------------- bash
def bash_completion(root: Command) -> str:
    commands = list(root.walk())
    value_kinds: dict[str, str] = {}
    for cmd in commands:
        for opt in cmd.options:
            if not opt.takes_value:
                continue
            kind = ("choices:" + " ".join(opt.choices)) if opt.choices else "file" if opt.is_file else "none"
            for flag in opt.flags:
                value_kinds.setdefault(flag, kind)
    lines = [
        "# bash completion for cbr-agent; generated from its parser by 'cbr-agent generate bash'",
        "_cbr_agent() {",
        '    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}',
        '    local cmd="" i w words="" opts=""',
        "    for ((i = 1; i < COMP_CWORD; i++)); do",
        '        w=${COMP_WORDS[i]}',
        '        case "$w" in -*) continue ;; esac',
        '        case "$cmd" in',
    ]
    for cmd in commands:
        if cmd.children:
            names = " ".join(c.path[-1] for c in cmd.children)
            key = " ".join(cmd.path)
            target = '"$w"' if not cmd.path else f'"{key} $w"'
            lines.append(f'            "{key}") case " {names} " in *" $w "*) cmd={target} ;; esac ;;')
    lines += ["        esac", "    done", '    case "$cmd" in']
    global_flags = " ".join(f for o in _shared(root) for f in o.flags)
    for cmd in commands:
        flags = " ".join(f for o in cmd.options for f in o.flags)
        flags = f"{flags} {global_flags} --help".strip() if cmd.path else f"{flags} --help"
        words = " ".join(c.path[-1] for c in cmd.children)
        lines.append(f'        "{" ".join(cmd.path)}") opts="{flags}"; words="{words}" ;;')
    lines += ["    esac", '    case "$prev" in']
    by_kind: dict[str, list[str]] = {}
    for flag, kind in sorted(value_kinds.items()):
        by_kind.setdefault(kind, []).append(flag)
    for kind, flags in sorted(by_kind.items()):
        pattern = "|".join(flags)
        if kind == "file":
            action = 'COMPREPLY=($(compgen -f -- "$cur")); return'
        elif kind.startswith("choices:"):
            action = f'COMPREPLY=($(compgen -W "{kind[8:]}" -- "$cur")); return'
        else:
            action = "return"
        lines.append(f"        {pattern}) {action} ;;")
    lines += [
        "    esac",
        '    if [[ $cur == -* ]]; then COMPREPLY=($(compgen -W "$opts" -- "$cur")); return; fi',
        '    if [[ -n $words ]]; then COMPREPLY=($(compgen -W "$words" -- "$cur")); return; fi',
        '    COMPREPLY=($(compgen -f -- "$cur"))',
        "}",
        "complete -o filenames -F _cbr_agent cbr-agent",
        "",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- zsh
def _zq(text: str) -> str:
    """Text inside a single-quoted zsh _arguments spec's [description]."""
    first = text.split(". ")[0]
    return first.replace("'", "'\\''").replace("[", "(").replace("]", ")").replace(":", " -")


def _zsh_spec(opt: Option) -> str:
    desc = _zq(opt.help)
    value = ""
    if opt.takes_value:
        action = f"({' '.join(opt.choices)})" if opt.choices else "_files" if opt.is_file else " "
        message = re.sub(r"[^a-z0-9_,-]", "", opt.metavar.lower()) or "value"
        value = f":{message}:{action}"
    star = "*" if opt.repeatable else ""
    if len(opt.flags) == 1:
        return f"'{star}{opt.flags[0]}[{desc}]{value}'"
    excl = "" if star else f"({' '.join(opt.flags)})"
    return f"'{excl}{star}'{{{','.join(opt.flags)}}}'[{desc}]{value}'"


def _func(cmd: Command) -> str:
    return "_cbr_agent" + "".join("_" + p.replace("-", "_") for p in cmd.path)


def zsh_completion(root: Command) -> str:
    out = ["#compdef cbr-agent", "# zsh completion for cbr-agent; generated from its parser by "
           "'cbr-agent generate zsh'", ""]
    global_specs = [_zsh_spec(o) for o in _shared(root)]
    for cmd in reversed(list(root.walk())):
        specs = [_zsh_spec(o) for o in cmd.options] + (global_specs if cmd.path else [])
        out.append(f"{_func(cmd)}() {{")
        if cmd.children:
            out.append("    local -a commands")
            out.append("    commands=(")
            for child in cmd.children:
                out.append(f"        '{child.path[-1]}:{_zq(child.help)}'")
            out.append("    )")
            out.append("    local curcontext=$curcontext state line")
            out.append("    _arguments -C \\")
            for spec in specs:
                out.append(f"        {spec} \\")
            out.append("        '1: :->command' '*:: :->args'")
            out.append("    case $state in")
            out.append("        command) _describe -t commands 'command' commands ;;")
            out.append("        args)")
            out.append("            case $words[1] in")
            for child in cmd.children:
                out.append(f"                {child.path[-1]}) {_func(child)} ;;")
            out.append("            esac ;;")
            out.append("    esac")
        else:
            positional = []
            for pos in cmd.positionals:
                action = f"({' '.join(pos.choices)})" if pos.choices else "_files"
                positional.append(f"'{'*' if pos.repeatable else ''}:{pos.metavar.lower()}:{action}'")
            out.append("    _arguments \\")
            for spec in specs + positional:
                out.append(f"        {spec} \\")
            out[-1] = out[-1].removesuffix(" \\")
        out.append("}")
        out.append("")
    out.append('_cbr_agent "$@"')
    out.append("")
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------- man
def _roff(text: str) -> str:
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return re.sub(r"^([.'])", r"\\&\1", text, flags=re.M)


def _man_option(opt: Option) -> list[str]:
    flags = ", ".join(f"\\fB{_roff(f)}\\fR" for f in opt.flags) or f"\\fI{_roff(opt.metavar)}\\fR"
    if opt.flags and opt.takes_value:
        flags += f" \\fI{_roff('{' + ','.join(opt.choices) + '}' if opt.choices else opt.metavar)}\\fR"
    help_text = _roff(opt.help or "")
    if opt.repeatable and opt.flags:
        help_text += " (repeatable)"
    return [".TP", flags, help_text]


def man_page(root: Command) -> str:
    from cbr_agent import __version__
    from cbr_agent.config import ENV_PREFIX, KEYS

    out = [
        f'.TH CBR\\-AGENT 1 "" "cbr\\-agent {__version__}" "User Commands"',
        ".SH NAME",
        "cbr\\-agent \\- " + _roff(root.description.rstrip(".")),
        ".SH SYNOPSIS",
        ".B cbr\\-agent",
        "[\\fIGLOBAL OPTIONS\\fR] \\fICOMMAND\\fR [\\fIOPTIONS\\fR] [\\fIARGUMENTS\\fR]",
        ".SH DESCRIPTION",
        "cbr\\-agent registers a host with a CBR control plane, follows its backup paths and excludes, and "
        "backs them up into a deduplicating, encrypted repository; the commands below also restore, "
        "inspect and maintain that repository. This page is generated from the program's own parser; "
        "the README (/usr/share/doc/cbr\\-agent/README.md) explains each feature in depth.",
        ".SH GLOBAL OPTIONS",
        "Accepted before or after any command.",
    ]
    for opt in root.options:
        out += _man_option(opt)
    out.append(".SH COMMANDS")
    for cmd in root.walk():
        if not cmd.path or cmd.children:
            continue
        usage = " ".join(f"[{p.metavar}...]" if p.repeatable else p.metavar for p in cmd.positionals)
        out.append(f'.SS "{_roff(cmd.name)} {_roff(usage)}"'.replace('  "', ' "').rstrip())
        out.append(_roff(cmd.description or cmd.help))
        for opt in cmd.positionals + cmd.options:
            out += _man_option(opt)
    out += [".SH EXIT STATUS", _roff("0 ok, 1 failure, 2 usage or configuration error, 3 done with "
            "warnings, 4 control plane unreachable, 5 credentials refused, 6 not found, 10 no repository, "
            "11 repository locked, 12 wrong password, 130 interrupted.")]
    out += [".SH ENVIRONMENT",
            "Every configuration key can be set as an environment variable:"]
    for key in KEYS:
        out += [".TP", f"\\fB{_roff(ENV_PREFIX + key.name.upper())}\\fR", _roff(key.doc)]
    for name, text in (("CBR_AGENT_CONFIG", "the configuration file"),
                       ("CBR_AGENT_NEW_PASSWORD", "the new password for 'key add' and 'key passwd'"),
                       ("CBR_AGENT_FROM_PASSWORD", "the source repository's password for 'copy'")):
        out += [".TP", f"\\fB{_roff(name)}\\fR", _roff(text)]
    out += [".SH FILES", ".TP", "\\fB/etc/cbr\\-agent/agent.toml\\fR",
            "configuration (as root; ~/.config/cbr\\-agent/agent.toml otherwise)",
            ".TP", "\\fB/var/lib/cbr\\-agent\\fR", "state directory (as root)",
            ".SH SEE ALSO", "\\fBsystemctl\\fR(1), /usr/share/doc/cbr\\-agent/README.md", ""]
    return "\n".join(out)
