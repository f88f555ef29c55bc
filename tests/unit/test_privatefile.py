"""Files holding secrets that other users can read are refused at start (issue 9, item 6)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cbr_agent.config import load_settings
from cbr_agent.errors import ConfigError
from cbr_agent.privatefile import check_private

SECRETS = ('password = "correct horse"\n', 'sk = "SK-secret"\n', 'token = "tok-secret"\n',
           'security_token = "st-secret"\n')


def _file(path: Path, text: str, mode: int) -> Path:
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return path


@pytest.mark.parametrize("text", SECRETS)
@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_config_file_with_a_secret_readable_by_others_is_refused(tmp_path: Path, text: str,
                                                                  mode: int) -> None:
    config = _file(tmp_path / "agent.toml", text, mode)
    with pytest.raises(ConfigError) as caught:
        load_settings(config_file=config, environ={})
    message = str(caught.value)
    assert str(config) in message and f"chmod 600 {config}" in message
    assert "\n" not in message
    value = text.split('"')[1]
    assert value not in message  # the secret itself never shows


@pytest.mark.parametrize("text", SECRETS)
def test_private_config_file_with_a_secret_is_accepted(tmp_path: Path, text: str) -> None:
    load_settings(config_file=_file(tmp_path / "agent.toml", text, 0o600), environ={})
    load_settings(config_file=_file(tmp_path / "ro.toml", text, 0o400), environ={})


def test_config_file_without_secrets_may_be_world_readable(tmp_path: Path) -> None:
    config = _file(tmp_path / "agent.toml", 'host_nickname = "web-1"\nak = "AK"\n', 0o644)
    assert load_settings(config_file=config, environ={}).host_nickname == "web-1"


def test_credentials_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    creds = _file(tmp_path / "credentials.toml", 'ak = "AK"\nsk = "SK-secret"\n', 0o644)
    config = _file(tmp_path / "agent.toml", f'credentials_file = "{creds}"\n', 0o644)
    with pytest.raises(ConfigError, match=f"chmod 600 {creds}"):
        load_settings(config_file=config, environ={})
    creds.chmod(0o600)
    assert load_settings(config_file=config, environ={}).sk == "SK-secret"


def test_server_credentials_keep_allowing_their_group(tmp_path: Path, caplog) -> None:
    path = _file(tmp_path / "server.toml", "", 0o640)
    check_private(path, "credentials file", group_may_read=True)
    assert "readable by its group" in caplog.text
    with pytest.raises(ConfigError, match="other users"):
        check_private(_file(tmp_path / "other.toml", "", 0o604), "credentials file", group_may_read=True)


def test_cli_refuses_to_start_with_one_line_and_exit_2(tmp_path: Path) -> None:
    config = _file(tmp_path / "agent.toml", 'password = "correct horse"\n', 0o644)
    proc = subprocess.run([sys.executable, "-m", "cbr_agent", "status", "--config", str(config),
                           "--state-dir", str(tmp_path / "state")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert f"chmod 600 {config}" in proc.stderr and "correct horse" not in proc.stderr
