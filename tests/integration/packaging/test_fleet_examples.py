"""The fleet examples (cloud-init, Ansible) parse and use install.sh as it is."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.integration.packaging.conftest import REPO

yaml = pytest.importorskip("yaml")

EXAMPLES = REPO / "packaging" / "examples"
INSTALL_SH = (REPO / "packaging" / "install.sh").read_text(encoding="utf-8")


def install_options() -> set[str]:
    """The options install.sh's argument loop accepts."""
    loop = INSTALL_SH[INSTALL_SH.index("while [ $# -gt 0 ]"):INSTALL_SH.index("# -- settings")]
    return set(re.findall(r"^\s+(--[a-z-]+)\)", loop, re.M))


def documented_settings() -> set[str]:
    header = INSTALL_SH.split("set -eu", 1)[0]
    return set(re.findall(r"CBR_AGENT_[A-Z_]+", header))


def test_every_example_is_valid_yaml() -> None:
    files = sorted(EXAMPLES.rglob("*.y*ml"))
    assert len(files) >= 4
    for path in files:
        assert yaml.safe_load(path.read_text(encoding="utf-8")) is not None, path


def test_cloud_init_runs_install_sh_with_a_root_only_settings_file() -> None:
    text = (EXAMPLES / "cloud-init.yaml").read_text(encoding="utf-8")
    assert text.startswith("#cloud-config\n")
    data = yaml.safe_load(text)
    (settings,) = data["write_files"]
    assert settings["permissions"] == "0600" and settings["owner"] == "root:root"
    keys = {line.split("=", 1)[0] for line in settings["content"].splitlines() if line}
    assert keys <= documented_settings(), keys - documented_settings()
    runs = [cmd for cmd in data["runcmd"] if "install.sh" in " ".join(cmd) and cmd[0] == "sh"]
    assert len(runs) == 1
    used = {arg for arg in runs[0] if arg.startswith("--")}
    assert used <= install_options() and "--settings" in used
    assert ["rm", "-f", settings["path"]] in data["runcmd"]


def role_tasks() -> list[dict]:
    return yaml.safe_load((EXAMPLES / "ansible/roles/cbr_agent/tasks/main.yml").read_text())


def flat_tasks(tasks: list[dict]) -> list[dict]:
    """Every task, with the ones inside block/rescue/always."""
    out = []
    for task in tasks:
        out.append(task)
        for part in ("block", "rescue", "always"):
            out += flat_tasks(task.get(part) or [])
    return out


def test_ansible_role_calls_install_sh_idempotently_and_hides_secrets() -> None:
    tasks = flat_tasks(role_tasks())
    (install,) = [t for t in tasks if "install.sh" in str(t.get("ansible.builtin.command", ""))]
    argv = install["ansible.builtin.command"]["argv"]
    assert {a for a in argv if a.startswith("--")} <= install_options()
    assert "result: changed" in install["changed_when"]
    (settings,) = [t for t in tasks if "ansible.builtin.template" in t]
    assert settings["no_log"] is True and settings["ansible.builtin.template"]["mode"] == "0600"
    template = (EXAMPLES / "ansible/roles/cbr_agent/templates/cbr-agent.settings.j2").read_text()
    keys = set(re.findall(r"^(CBR_AGENT_[A-Z_]+)=", template, re.M))
    assert keys <= documented_settings(), keys - documented_settings()
    defaults = yaml.safe_load((EXAMPLES / "ansible/roles/cbr_agent/defaults/main.yml").read_text())
    used_vars = set(re.findall(r"\b(cbr_agent_[a-z_]+)\b", template))
    assert used_vars <= set(defaults), used_vars - set(defaults)


def test_the_playbook_uses_the_role_and_shows_the_fleet() -> None:
    plays = yaml.safe_load((EXAMPLES / "ansible/playbook.yml").read_text())
    assert plays[0]["roles"] == [{"role": "cbr_agent"}]
    commands = [t.get("ansible.builtin.command") for play in plays for t in play.get("tasks", [])]
    assert "cbr-agent agents" in commands
    assert (EXAMPLES / "ansible/roles" / "cbr_agent").is_dir()
    assert Path(EXAMPLES / "ansible/inventory.ini").read_text().count("cbr_agent_paths=") >= 1


def test_ansible_role_removes_the_settings_file_whatever_happens() -> None:
    """The settings file holds the secret key: like the cloud-init example, the role deletes it once
    install.sh ran, and does so in an ``always`` section, so a failed install does not leave it."""
    tasks = role_tasks()
    (guarded,) = [t for t in tasks if "block" in t]
    written = [t["ansible.builtin.template"]["dest"] for t in guarded["block"]
               if "ansible.builtin.template" in t]
    assert len(written) == 1
    assert any("install.sh" in str(t.get("ansible.builtin.command", "")) for t in guarded["block"])
    removed = [t["ansible.builtin.file"] for t in guarded.get("always") or [] if "ansible.builtin.file" in t]
    assert {"path": written[0], "state": "absent"} in removed
    # every task that writes or removes the staging file leaves the "changed" verdict to install.sh
    for task in [*guarded["block"], *guarded["always"]]:
        if "ansible.builtin.template" in task or "ansible.builtin.file" in task:
            assert task.get("changed_when") is False, task["name"]


def test_ansible_role_registers_only_what_it_uses() -> None:
    text = (EXAMPLES / "ansible/roles/cbr_agent/tasks/main.yml").read_text()
    for task in flat_tasks(role_tasks()):
        name = task.get("register")
        if name:
            uses = len(re.findall(rf"\b{name}\b", text)) - 1
            assert uses >= 1, f"'{task['name']}' registers {name}, which nothing uses"
