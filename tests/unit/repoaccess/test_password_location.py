"""Where the repository password is looked for and where a generated one goes (issue 9, item 1)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from cbr_agent.config import load_settings
from cbr_agent.repoaccess.password import (
    default_password_file,
    find_password,
    generate_password_file,
    legacy_password_file,
)


@pytest.fixture
def settings_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    config = tmp_path / "etc" / "agent.toml"
    config.parent.mkdir()
    config.write_text("")
    state = tmp_path / "var" / "state"
    for name in list(os.environ):
        if name.startswith("CBR_AGENT_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("CBR_AGENT_CONFIG", str(config))
    monkeypatch.setenv("CBR_AGENT_STATE_DIR", str(state))
    return config, state


def test_a_generated_password_goes_to_the_state_dir_never_next_to_the_config(settings_env) -> None:
    config, state = settings_env
    settings = load_settings()
    password, path = generate_password_file(settings)
    assert path == state / "repository.password" == default_password_file(settings)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(state.stat().st_mode) == 0o700, "a state dir made for it is private"
    assert sorted(p.name for p in config.parent.iterdir()) == ["agent.toml"]
    found = find_password(settings)
    assert found is not None and found.value == password and found.path == path
    assert found.source == f"password file {path}" and password not in found.source


def test_a_password_file_at_the_old_place_is_still_read(settings_env) -> None:
    """Hosts upgraded from a version that generated it next to the config keep their password."""
    config, state = settings_env
    legacy = config.parent / "repository.password"
    legacy.write_text("old-password\n")
    settings = load_settings()
    assert legacy_password_file(settings) == legacy
    found = find_password(settings)
    assert found is not None and found.value == "old-password" and found.path == legacy
    # and nothing new is generated beside it
    assert not (state / "repository.password").exists()


def test_the_state_dir_file_wins_over_the_old_place(settings_env) -> None:
    config, state = settings_env
    (config.parent / "repository.password").write_text("old\n")
    state.mkdir(parents=True)
    (state / "repository.password").write_text("new\n")
    found = find_password(load_settings())
    assert found is not None and found.value == "new"


def test_environment_and_password_file_come_first_and_say_so(settings_env, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    _config, state = settings_env
    state.mkdir(parents=True)
    (state / "repository.password").write_text("generated\n")
    other = tmp_path / "pw"
    other.write_text("from-file\n")
    monkeypatch.setenv("CBR_AGENT_PASSWORD_FILE", str(other))
    found = find_password(load_settings())
    assert found is not None and (found.value, found.source) == ("from-file", f"password file {other}")
    monkeypatch.setenv("CBR_AGENT_PASSWORD", "from-env")
    found = find_password(load_settings())
    assert found is not None and found.value == "from-env"
    assert found.source == "environment CBR_AGENT_PASSWORD" and found.path is None
