"""The .deb installed for real into a throwaway root: install, run, upgrade, remove, purge.

dpkg runs the maintainer scripts chrootless with DPKG_ROOT set, so they build the venv with this
host's system Python inside the root and leave the running system alone.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.integration.conftest import ServerProcess
from tests.integration.packaging.conftest import Built, DpkgRoot

pytestmark = pytest.mark.slow


def repack(deb: Path, version: str, out: Path) -> Path:
    """The same package under another version: an upgrade for dpkg."""
    tree = out / "tree"
    subprocess.run(["dpkg-deb", "--raw-extract", str(deb), str(tree)], check=True)
    control = tree / "DEBIAN" / "control"
    lines = [f"Version: {version}" if line.startswith("Version:") else line
             for line in control.read_text().splitlines()]
    control.write_text("\n".join(lines) + "\n")
    target = out / f"cbr-agent_{version}_amd64.deb"
    subprocess.run(["dpkg-deb", "-Zgzip", "-z1", "--root-owner-group", "--build", str(tree), str(target)],
                   check=True, capture_output=True)
    return target


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o7777


def test_installed_cli_runs_from_the_installed_location(installed_root: DpkgRoot,
                                                        built_packages: Built) -> None:
    assert installed_root.status() == f"installed {built_packages.version}-1"
    proc = installed_root.cli("--version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"cbr-agent {built_packages.version}"
    proc = installed_root.cli("status", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["state_dir"] == str(installed_root.state_dir)
    assert report["registered"] is False and report["agent_id"] is None
    assert report["daemon"]["running"] is False
    proc = installed_root.cli("status")
    assert proc.returncode == 0 and "not running" in proc.stdout


def test_install_makes_root_only_dirs_and_a_venv_of_the_system_python(installed_root: DpkgRoot) -> None:
    for directory in ("etc/cbr-agent", "var/lib/cbr-agent", "var/cache/cbr-agent"):
        path = installed_root / directory
        assert path.is_dir() and mode(path) == 0o700, directory
        assert path.stat().st_uid == 0
    assert mode(installed_root / "etc/cbr-agent/agent.env") == 0o600
    venv = installed_root / "opt/cbr-agent/venv"
    assert venv.is_symlink() and str(venv.readlink()).startswith("venvs/")
    cfg = (venv / "pyvenv.cfg").read_text()
    assert "home = /usr/bin" in cfg, cfg  # the system Python, not a build host's or a pyenv one
    assert [p.name for p in (installed_root / "opt/cbr-agent/venvs").iterdir()] == [venv.readlink().name]


def test_install_creates_no_agent_identity(installed_root: DpkgRoot) -> None:
    """Golden images: an image with the agent installed but never started holds no agent id, so
    every clone makes its own on first start."""
    leftovers = sorted(p.name for p in installed_root.state_dir.iterdir())
    assert "identity.json" not in leftovers, leftovers


def test_wrapper_says_what_to_do_when_the_venv_is_broken(built_packages: Built, dpkg_root: DpkgRoot) -> None:
    dpkg_root.install(built_packages.deb)
    (dpkg_root / "opt/cbr-agent/venv").unlink()
    proc = dpkg_root.cli("--version")
    assert proc.returncode == 1
    assert "virtual environment" in proc.stderr and "make-venv" in proc.stderr
    rebuilt = subprocess.run([str(dpkg_root / "opt/cbr-agent/libexec/make-venv")], capture_output=True,
                             text=True)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert dpkg_root.cli("--version").returncode == 0


def test_upgrade_keeps_identity_config_and_state_and_replaces_the_venv(
        built_packages: Built, dpkg_root: DpkgRoot, cp_server, tmp_path: Path) -> None:
    dpkg_root.install(built_packages.deb)
    proc = dpkg_root.cli("register", "--endpoint", cp_server.url, "--project-id", cp_server.project_id,
                         "--ak", cp_server.ak, "--config", str(dpkg_root.config),
                         env={"CBR_AGENT_SK": cp_server.sk})
    assert proc.returncode == 0, proc.stderr
    identity = (dpkg_root.state_dir / "identity.json").read_bytes()
    config = dpkg_root.config.read_bytes()
    old_venv = (dpkg_root / "opt/cbr-agent/venv").readlink()
    agent_id = json.loads(identity)["agent_id"]

    upgraded = repack(built_packages.deb, f"{built_packages.version}-2", tmp_path)
    proc = dpkg_root.install(upgraded)
    assert dpkg_root.status() == f"installed {built_packages.version}-2"
    assert (dpkg_root.state_dir / "identity.json").read_bytes() == identity
    assert dpkg_root.config.read_bytes() == config
    new_venv = (dpkg_root / "opt/cbr-agent/venv").readlink()
    assert new_venv != old_venv
    assert not (dpkg_root / "opt/cbr-agent" / old_venv).exists(), "the old venv is pruned"
    status = json.loads(dpkg_root.cli("status", "--json").stdout)
    assert status["agent_id"] == agent_id and status["registered"] is True
    listed = cp_server.client().list_agents()
    assert [a.agent_id for a in listed.agents] == [agent_id]


def test_remove_marks_uninstall_keeps_state_and_purge_removes_it(
        built_packages: Built, dpkg_root: DpkgRoot, cp_server) -> None:
    dpkg_root.install(built_packages.deb)
    proc = dpkg_root.cli("register", "--endpoint", cp_server.url, "--project-id", cp_server.project_id,
                         "--ak", cp_server.ak, "--config", str(dpkg_root.config),
                         env={"CBR_AGENT_SK": cp_server.sk})
    assert proc.returncode == 0, proc.stderr
    agent_id = json.loads((dpkg_root.state_dir / "identity.json").read_text())["agent_id"]
    assert cp_server.client().show_agent(agent_id).status == "normal"

    proc = dpkg_root.dpkg("--remove", "cbr-agent")
    assert proc.returncode == 0, proc.stderr
    assert "marked the agent 'uninstall'" in proc.stderr
    assert cp_server.client().show_agent(agent_id).status == "uninstall"
    assert not (dpkg_root / "usr/bin/cbr-agent").exists()
    assert not (dpkg_root / "opt/cbr-agent").exists(), "the venv no package owns is removed too"
    assert (dpkg_root.state_dir / "identity.json").exists(), "remove keeps the state"
    assert dpkg_root.config.exists() and (dpkg_root / "etc/cbr-agent/agent.env").exists()

    proc = dpkg_root.dpkg("--purge", "cbr-agent")
    assert proc.returncode == 0, proc.stderr
    for gone in ("etc/cbr-agent", "var/lib/cbr-agent", "var/cache/cbr-agent"):
        assert not (dpkg_root / gone).exists(), gone
    assert dpkg_root.status() in ("", "not-installed")


def test_removal_is_never_blocked_by_an_unreachable_control_plane(
        built_packages: Built, dpkg_root: DpkgRoot, cp_server) -> None:
    dpkg_root.install(built_packages.deb)
    proc = dpkg_root.cli("register", "--endpoint", cp_server.url, "--project-id", cp_server.project_id,
                         "--ak", cp_server.ak, "--config", str(dpkg_root.config),
                         env={"CBR_AGENT_SK": cp_server.sk})
    assert proc.returncode == 0, proc.stderr
    cp_server.stop()
    started = time.monotonic()
    proc = dpkg_root.dpkg("--purge", "cbr-agent")
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    assert "could not mark the agent 'uninstall'" in proc.stderr
    assert elapsed < 30, f"removal took {elapsed:.1f} s"
    assert not (dpkg_root / "opt/cbr-agent").exists()
    assert not shutil.which(str(dpkg_root / "usr/bin/cbr-agent"))


def test_purge_keeps_the_repository_with_snapshots_and_its_password(
        built_packages: Built, dpkg_root: DpkgRoot, tmp_path: Path) -> None:
    """Purge deletes config, state and cache, but never the backups (issue 9, item 3)."""
    dpkg_root.install(built_packages.deb)
    data = tmp_path / "data"
    data.mkdir()
    (data / "f.txt").write_text("precious\n")
    proc = dpkg_root.cli("backup", str(data), env={"CBR_AGENT_INSECURE_TEST_KDF": "1"})
    assert proc.returncode == 0, proc.stderr
    repository = dpkg_root.state_dir / "repository"
    password = dpkg_root.state_dir / "repository.password"
    assert password.exists() and len(list((repository / "snapshots").iterdir())) == 1

    proc = dpkg_root.dpkg("--purge", "cbr-agent")
    assert proc.returncode == 0, proc.stderr
    assert f"kept the repository {repository}: it holds 1 snapshot(s)" in proc.stderr
    assert f"kept its password {password}" in proc.stderr
    assert dpkg_root.status() in ("", "not-installed")
    assert sorted(p.name for p in dpkg_root.state_dir.iterdir()) == ["repository", "repository.password"]
    assert not (dpkg_root / "etc/cbr-agent").exists() and not (dpkg_root / "var/cache/cbr-agent").exists()
    # and the backups restore with the kept password, with no package left
    from cbr_agent.repository import Repository

    repo = Repository.open(str(repository), password.read_text().strip())
    assert len(repo.list_snapshots()) == 1


class PackagedServer(ServerProcess):
    """``cbr-agent server`` as the package installed it (its venv), not the source tree."""

    def __init__(self, directory: Path, executable: Path) -> None:
        super().__init__(directory)
        self.executable = executable

    def command(self) -> list[str]:
        return [str(self.executable), *super().command()[3:]]


def test_the_packaged_venv_runs_the_server(installed_root: DpkgRoot, tmp_path: Path) -> None:
    """The package ships the server extra: `cbr-agent server` starts from it (issue 9, item 2)."""
    server = PackagedServer(tmp_path / "server", installed_root / "usr/bin/cbr-agent")
    assert server.command()[:2] == [str(installed_root / "usr/bin/cbr-agent"), "server"]
    server.start()
    try:
        # it serves the API with its credentials (signed AK/SK calls); the root's agent stays unregistered
        assert list(server.client().list_agents().agents) == []
    finally:
        assert server.stop() == 0, server.log_text()


def test_the_packaged_venv_ships_the_s3_extra(installed_root: DpkgRoot) -> None:
    """s3:// repositories work from the package alone (issue 11): the installed CLI reaches for the
    endpoint (an S3 error, exit 4) instead of saying botocore is missing."""
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = installed_root.cli("init", "--repository", "s3://bucket/host", config=False, env={
        "CBR_AGENT_PASSWORD": "pw-of-the-test", "CBR_AGENT_S3_ENDPOINT": f"http://127.0.0.1:{port}",
        "CBR_AGENT_S3_RETRIES": "1", "CBR_AGENT_S3_PATH_STYLE": "true", "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test-secret", "AWS_EC2_METADATA_DISABLED": "true"})
    assert proc.returncode == 4, proc.stderr
    assert "not installed" not in proc.stderr and "Traceback" not in proc.stderr
