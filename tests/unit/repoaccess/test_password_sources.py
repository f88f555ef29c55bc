"""Where the repository password comes from, and the generated password file."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from cbr_agent.config import load_settings
from cbr_agent.errors import ConfigError
from cbr_agent.repoaccess.password import generate_password_file, require_password, resolve_password


def test_password_sources(tmp_path: Path, monkeypatch) -> None:
    config = tmp_path / "conf" / "agent.toml"
    config.parent.mkdir()
    config.write_text("")
    monkeypatch.setenv("CBR_AGENT_CONFIG", str(config))
    monkeypatch.setenv("CBR_AGENT_STATE_DIR", str(tmp_path / "state"))
    settings = load_settings()
    assert resolve_password(settings) is None
    with pytest.raises(ConfigError, match="no repository password"):
        require_password(settings)
    password, path = generate_password_file(settings)
    assert path == tmp_path / "state" / "repository.password"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert resolve_password(settings) == password
    assert generate_password_file(settings)[0] == password  # never overwritten
    other = tmp_path / "pw"
    other.write_text("from-file\n")
    monkeypatch.setenv("CBR_AGENT_PASSWORD_FILE", str(other))
    assert resolve_password(load_settings()) == "from-file"
    monkeypatch.setenv("CBR_AGENT_PASSWORD", "from-env")
    assert resolve_password(load_settings()) == "from-env"
    monkeypatch.delenv("CBR_AGENT_PASSWORD")
    monkeypatch.setenv("CBR_AGENT_PASSWORD_FILE", str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="does not exist"):
        resolve_password(load_settings())
