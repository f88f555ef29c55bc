"""``cbr-agent init`` as a real subprocess: a new config file, which password it used, bad URLs
(issue 9, item 10)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def init(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CBR_AGENT_")}
    clean.update(CBR_AGENT_INSECURE_TEST_KDF="1", **(env or {}))
    return subprocess.run([sys.executable, "-m", "cbr_agent", "init", "--state-dir", str(tmp_path / "state"),
                           *args], capture_output=True, text=True, env=clean, timeout=60)


def test_init_creates_a_config_file_that_does_not_exist_yet_and_labels_it(tmp_path: Path) -> None:
    config = tmp_path / "new" / "agent.toml"
    repo = tmp_path / "repo"
    proc = init(tmp_path, "--config", str(config), "--repository", str(repo), "--json")
    assert proc.returncode == 0, proc.stderr
    text = config.read_text()
    assert text.startswith("# written by 'cbr-agent init'"), text
    assert str(repo) in text
    result = json.loads(proc.stdout)
    assert result["config_file"] == str(config)
    assert result["password_file"] == str(tmp_path / "state" / "repository.password")
    # the file it wrote is one later commands read
    snaps = subprocess.run([sys.executable, "-m", "cbr_agent", "snapshots", "--json", "--config", str(config),
                            "--state-dir", str(tmp_path / "state")], capture_output=True, text=True,
                           env={k: v for k, v in os.environ.items() if not k.startswith("CBR_AGENT_")})
    assert snaps.returncode == 0 and json.loads(snaps.stdout) == [], snaps.stderr


def test_init_without_repository_writes_a_missing_config_too(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    proc = init(tmp_path, "--config", str(config))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "state" / "repository").is_dir()
    assert "written by 'cbr-agent init'" in config.read_text()


def test_init_says_which_existing_password_file_it_used(tmp_path: Path) -> None:
    config = tmp_path / "etc" / "agent.toml"
    config.parent.mkdir()
    config.write_text("")
    old = config.parent / "repository.password"  # where an earlier version generated it
    old.write_text("an old secret password\n")
    proc = init(tmp_path, "--config", str(config), "--json")
    assert proc.returncode == 0, proc.stderr
    assert f"password file {old}" in proc.stderr
    assert "an old secret password" not in proc.stdout + proc.stderr
    result = json.loads(proc.stdout)
    assert result["password_source"] == f"password file {old}" and result["password_file"] is None
    assert not (tmp_path / "state" / "repository.password").exists(), "nothing generated beside it"


def test_init_says_when_the_password_came_from_the_environment(tmp_path: Path) -> None:
    proc = init(tmp_path, "--config", str(tmp_path / "agent.toml"), env={"CBR_AGENT_PASSWORD": "s3cr3t-pw"})
    assert proc.returncode == 0, proc.stderr
    assert "environment CBR_AGENT_PASSWORD" in proc.stderr and "s3cr3t-pw" not in proc.stderr


@pytest.mark.parametrize("url", ["ftp://host/repo", "sftp://user@host/repo"])
def test_an_unsupported_repository_url_is_a_usage_error(tmp_path: Path, url: str) -> None:
    config = tmp_path / "agent.toml"
    proc = init(tmp_path, "--config", str(config), "--repository", url)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "not supported" in lines[0], proc.stderr
    assert not (tmp_path / "state" / "repository.password").exists(), "no password for no repository"
    assert not config.exists() or url not in config.read_text()
