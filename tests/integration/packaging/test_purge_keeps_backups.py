"""Purge never deletes backups (issue 9, item 3): the postrm run as dpkg runs it on purge
(``DPKG_ROOT`` pointing at a throwaway root), on state made by the real CLI.

The same check through ``dpkg --purge`` of the built package is in ``test_deb_lifecycle.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cbr_agent.repository import Repository
from tests.integration.packaging.conftest import REPO

POSTRM = REPO / "packaging" / "scripts" / "postremove.sh"


class Root:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.etc = path / "etc/cbr-agent"
        self.state = path / "var/lib/cbr-agent"
        self.cache = path / "var/cache/cbr-agent"
        for d in (self.etc, self.state, self.cache):
            d.mkdir(parents=True, mode=0o700)
        (self.etc / "agent.toml").write_text("")
        (self.etc / "agent.env").write_text("# sample\n")
        (self.cache / "junk").write_text("x")

    def cli(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        clean = {k: v for k, v in os.environ.items() if not k.startswith("CBR_AGENT_")}
        clean.update(CBR_AGENT_INSECURE_TEST_KDF="1", **(env or {}))
        return subprocess.run([sys.executable, "-m", "cbr_agent", *args, "--state-dir", str(self.state),
                               "--config", str(self.etc / "agent.toml")],
                              capture_output=True, text=True, env=clean, timeout=60)

    def backup(self, data: Path) -> None:
        data.mkdir(exist_ok=True)
        (data / "f.txt").write_text("precious\n")
        proc = self.cli("register")  # an agent identity and an embedded control plane in the state dir
        assert proc.returncode == 0, proc.stderr
        proc = self.cli("backup", str(data))
        assert proc.returncode == 0, proc.stderr

    def purge(self) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(["sh", str(POSTRM), "purge"], capture_output=True, text=True, timeout=60,
                              env={**os.environ, "DPKG_ROOT": str(self.path)})
        assert proc.returncode == 0, proc.stderr
        return proc


@pytest.fixture
def root(tmp_path: Path) -> Root:
    return Root(tmp_path / "root")


def test_purge_keeps_a_repository_with_snapshots_and_its_password(root: Root, tmp_path: Path) -> None:
    root.backup(tmp_path / "data")
    password = root.state / "repository.password"
    assert password.exists() and (root.state / "identity.json").exists()
    proc = root.purge()
    repository = root.state / "repository"
    assert f"kept the repository {repository}: it holds 1 snapshot(s)" in proc.stderr
    assert f"kept its password {password}" in proc.stderr
    # the backups are intact and open with the kept password; nothing else is left
    repo = Repository.open(str(repository), password.read_text().strip())
    assert len(repo.list_snapshots()) == 1
    assert sorted(p.name for p in root.state.iterdir()) == ["repository", "repository.password"]
    assert not root.etc.exists() and not root.cache.exists()


def test_purge_removes_a_repository_without_snapshots(root: Root) -> None:
    proc = root.cli("init")
    assert proc.returncode == 0, proc.stderr
    assert (root.state / "repository").is_dir()
    proc = root.purge()
    assert "kept" not in proc.stderr
    for gone in (root.state, root.etc, root.cache):
        assert not gone.exists(), gone


def test_purge_keeps_the_password_at_the_old_place_too(root: Root, tmp_path: Path) -> None:
    """A host upgraded from a version that kept the password next to the config."""
    old = root.etc / "repository.password"
    old.write_text("from before\n")
    root.backup(tmp_path / "data")
    assert not (root.state / "repository.password").exists()
    proc = root.purge()
    assert f"kept its password {old}" in proc.stderr
    assert sorted(p.name for p in root.etc.iterdir()) == ["repository.password"]
    assert len(Repository.open(str(root.state / "repository"), "from before").list_snapshots()) == 1


def test_purge_keeps_the_password_of_a_repository_configured_elsewhere(root: Root, tmp_path: Path) -> None:
    nas = tmp_path / "nas-repo"
    proc = root.cli("init", "--repository", str(nas))
    assert proc.returncode == 0, proc.stderr
    password = root.state / "repository.password"
    assert password.exists()
    proc = root.purge()
    assert f"{nas}, was not touched" in proc.stderr
    assert f"kept its password {password}" in proc.stderr
    assert password.exists() and (nas / "config").exists()
    assert not (root.state / "identity.json").exists()


def test_purge_keeps_a_config_file_that_holds_the_password(root: Root, tmp_path: Path) -> None:
    config = root.etc / "agent.toml"
    config.write_text('password = "set in the config"\n')
    config.chmod(0o600)
    root.backup(tmp_path / "data")
    assert not (root.state / "repository.password").exists()
    proc = root.purge()
    assert f"kept {config}: it holds the repository's password" in proc.stderr
    assert sorted(p.name for p in root.etc.iterdir()) == ["agent.toml"]
    assert len(Repository.open(str(root.state / "repository"), "set in the config").list_snapshots()) == 1
