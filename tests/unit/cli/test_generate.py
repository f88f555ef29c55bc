"""Shell completions and the man page, generated from the parser: complete, valid, and working."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cbr_agent.cli.generate import bash_completion, describe, man_page, zsh_completion
from cbr_agent.cli.main import build_parser

ROOT = describe(build_parser())
COMMANDS = [c for c in ROOT.walk() if c.path]


def generated(what: str) -> str:
    res = subprocess.run([sys.executable, "-m", "cbr_agent", "generate", what], capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    return res.stdout


def test_every_command_and_option_is_in_each_output() -> None:
    outputs = {"bash": bash_completion(ROOT), "zsh": zsh_completion(ROOT), "man": man_page(ROOT)}
    assert {"find", "diff", "stats", "dump", "key", "tag", "copy", "backup", "forget"} <= {
        c.path[0] for c in COMMANDS}
    for what, text in outputs.items():
        unescaped = text.replace("\\-", "-")
        for cmd in COMMANDS:
            assert cmd.path[-1] in unescaped, (what, cmd.path)
            for opt in cmd.options:
                for flag in opt.flags:
                    assert flag in unescaped, (what, cmd.path, flag)
    # the common options are listed once on the root, not on every command
    backup = next(c for c in COMMANDS if c.path == ["backup"])
    assert not any("--config" in o.flags for o in backup.options)


def test_the_command_prints_them(tmp_path: Path) -> None:
    assert generated("bash") == bash_completion(ROOT)
    assert generated("man").startswith(".TH CBR\\-AGENT 1")
    res = subprocess.run([sys.executable, "-m", "cbr_agent", "generate", "fish"], capture_output=True,
                         text=True)
    assert res.returncode == 2


def test_bash_script_is_valid_and_completes() -> None:
    script = bash_completion(ROOT)
    subprocess.run(["bash", "-n"], input=script, text=True, check=True)

    def complete(line: str) -> set[str]:
        words = line.split(" ")
        program = (script + "\nCOMP_WORDS=(" + " ".join(f"'{w}'" for w in words) + ")\n"
                   f"COMP_CWORD={len(words) - 1}\n_cbr_agent\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"\n")
        out = subprocess.run(["bash", "-c", program], capture_output=True, text=True, check=True,
                             cwd="/").stdout
        return set(out.split())

    assert complete("cbr-agent ba") == {"backup", "backups"}  # backups: the CBR backups (12cbr)
    assert complete("cbr-agent key ") == {"list", "add", "remove", "passwd"}
    assert complete("cbr-agent stats --mode ") == {"restore-size", "files-by-contents", "raw-data"}
    assert complete("cbr-agent find --ne") == {"--newest"}
    assert complete("cbr-agent key add --new") == {"--new-password-file"}
    assert "--keep-within" in complete("cbr-agent forget --keep-")
    assert "--config" in complete("cbr-agent --state-dir /tmp forget --con")
    assert complete("cbr-agent restore latest --target /e") >= {"/etc"}  # directories and files
    assert complete("cbr-agent backup --tag ") == set()  # a value nobody can guess


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is not installed")
def test_zsh_script_is_valid() -> None:
    script = zsh_completion(ROOT)
    assert script.startswith("#compdef cbr-agent")
    subprocess.run(["zsh", "-n"], input=script, text=True, check=True)
    # every function it dispatches to is defined
    for cmd in ROOT.walk():
        name = "_cbr_agent" + "".join("_" + p.replace("-", "_") for p in cmd.path)
        assert f"{name}() {{" in script


@pytest.mark.skipif(shutil.which("groff") is None, reason="groff is not installed")
def test_man_page_renders_without_warnings() -> None:
    page = man_page(ROOT)
    res = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z"], input=page, capture_output=True,
                         text=True)
    assert res.returncode == 0 and res.stderr == ""
    text = subprocess.run(["groff", "-man", "-Tutf8", "-P", "-cbou"], input=page, capture_output=True,
                          text=True).stdout
    plain = text.replace("\u2010", "-")
    for section in ("NAME", "SYNOPSIS", "COMMANDS", "EXIT STATUS", "ENVIRONMENT"):
        assert section in plain
    assert "cbr-agent key passwd" in plain and "CBR_AGENT_NEW_PASSWORD" in plain
