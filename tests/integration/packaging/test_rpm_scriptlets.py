"""The maintainer scripts called the way rpm calls them (there is no rpm on the test machine).

rpm passes a count instead of dpkg's action words: %post 1 on install and 2 on upgrade; %preun and
%postun 1 on upgrade (the old package's, after the new %post) and 0 on erase. The package's files are
laid out with ``dpkg-deb -x`` (the rpm carries the same files) and the scripts run with
``DPKG_ROOT`` pointing there, in rpm's order.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.integration.packaging.conftest import REPO, Built, DpkgRoot

pytestmark = pytest.mark.slow

SCRIPTS = REPO / "packaging" / "scripts"


def scriptlet(root: DpkgRoot, name: str, arg: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DPKG_ROOT": str(root.path)}
    proc = subprocess.run(["sh", str(SCRIPTS / name), arg], capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == 0, f"{name} {arg}: {proc.stderr}"
    return proc


def test_install_upgrade_and_erase_in_rpm_order(built_packages: Built, dpkg_root: DpkgRoot,
                                                cp_server) -> None:
    subprocess.run(["dpkg-deb", "-x", str(built_packages.deb), str(dpkg_root.path)], check=True)
    scriptlet(dpkg_root, "postinstall.sh", "1")
    assert (dpkg_root.state_dir.stat().st_mode & 0o777) == 0o700
    proc = dpkg_root.cli("register", "--endpoint", cp_server.url, "--project-id", cp_server.project_id,
                         "--ak", cp_server.ak, "--config", str(dpkg_root.config),
                         env={"CBR_AGENT_SK": cp_server.sk})
    assert proc.returncode == 0, proc.stderr
    agent_id = json.loads((dpkg_root.state_dir / "identity.json").read_text())["agent_id"]
    venv_before = (dpkg_root / "opt/cbr-agent/venv").readlink()

    # upgrade: new %post 2, then the old package's %preun 1 and %postun 1
    scriptlet(dpkg_root, "postinstall.sh", "2")
    scriptlet(dpkg_root, "preremove.sh", "1")
    scriptlet(dpkg_root, "postremove.sh", "1")
    venv_after = (dpkg_root / "opt/cbr-agent/venv").readlink()
    assert venv_after != venv_before and not (dpkg_root / "opt/cbr-agent" / venv_before).exists()
    assert dpkg_root.cli("--version").returncode == 0, "the old package's scripts left the new venv alone"
    assert cp_server.client().show_agent(agent_id).status == "normal", "an upgrade is no uninstall"
    assert json.loads((dpkg_root.state_dir / "identity.json").read_text())["agent_id"] == agent_id

    # erase: %preun 0, files go, %postun 0
    proc = scriptlet(dpkg_root, "preremove.sh", "0")
    assert "marked the agent 'uninstall'" in proc.stderr
    assert cp_server.client().show_agent(agent_id).status == "uninstall"
    scriptlet(dpkg_root, "postremove.sh", "0")
    assert not (dpkg_root / "opt/cbr-agent/venv").exists()
    assert not (dpkg_root / "opt/cbr-agent/venvs").exists()
    assert (dpkg_root.state_dir / "identity.json").exists(), "rpm has no purge: the state stays"
    assert dpkg_root.config.exists()


def test_scripts_ignore_the_actions_they_have_nothing_to_do_for(dpkg_root: DpkgRoot) -> None:
    """dpkg's other calls (failed-upgrade, deconfigure, ...) change nothing and never fail."""
    (dpkg_root / "var/lib/cbr-agent").mkdir(parents=True)
    marker = dpkg_root / "var/lib/cbr-agent/keep"
    marker.write_text("x")
    for name, arg in (("preremove.sh", "deconfigure"), ("preremove.sh", "failed-upgrade"),
                      ("preremove.sh", "upgrade"), ("postremove.sh", "upgrade"),
                      ("postremove.sh", "failed-upgrade"), ("postremove.sh", "abort-install"),
                      ("postremove.sh", "disappear")):
        scriptlet(dpkg_root, name, arg)
    assert marker.read_text() == "x"


def test_the_scripts_are_posix_sh() -> None:
    others = ("files/make-venv", "files/cbr-agent", "install.sh", "build.sh", "verify-systemd.sh")
    for script in [*SCRIPTS.glob("*.sh"), *(REPO / "packaging" / name for name in others)]:
        proc = subprocess.run(["sh", "-n", str(script)], capture_output=True, text=True)
        assert proc.returncode == 0, f"{script}: {proc.stderr}"
        assert script.read_text().startswith("#!/bin/sh\n"), script
