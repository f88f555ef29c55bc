"""Layered configuration: defaults < file < environment < flags, secrets from files, errors that name
the file, the key and what is expected."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cbr_agent.config import ENV_PREFIX, KEYS, Settings, load_settings
from cbr_agent.errors import ConfigError


@pytest.fixture(autouse=True)
def not_root(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests run as root on CI; the defaults must come from the test's own HOME, not /etc."""
    import cbr_agent.config as config

    monkeypatch.setattr(config, "is_root", lambda: False)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)  # files holding secrets must be private (tests/unit/test_privatefile.py)
    return path


def test_defaults_without_any_file(tmp_path: Path) -> None:
    settings = load_settings(config_file=None, environ={ENV_PREFIX + "STATE_DIR": str(tmp_path)})
    assert settings.endpoint is None and settings.project_id == "local"
    assert settings.heartbeat_interval == 60.0 and settings.agent_type == "native"
    assert settings.state_dir == tmp_path
    assert settings.repository == (tmp_path / "repository").as_uri()


def test_every_key_has_a_settings_field_and_a_documented_default() -> None:
    names = set(Settings.__dataclass_fields__)
    for key in KEYS:
        assert key.name in names, key.name
        assert key.doc and key.expected


def test_layers_file_then_environment_then_flags(tmp_path: Path) -> None:
    config = write(tmp_path / "agent.toml", 'heartbeat_interval = 30\nproject_id = "from-file"\n'
                   'host_nickname = "file-nick"\n')
    env = {ENV_PREFIX + "HEARTBEAT_INTERVAL": "20", ENV_PREFIX + "PROJECT_ID": "from-env"}
    settings = load_settings(config_file=config, environ=env, overrides={"heartbeat_interval": "10",
                                                                          "project_id": None})
    assert settings.heartbeat_interval == 10.0  # flag beats environment beats file
    assert settings.project_id == "from-env"    # a None flag is unset
    assert settings.host_nickname == "file-nick"


@pytest.mark.parametrize("key", [k for k in KEYS if k.name not in ("state_dir",)])
def test_every_key_is_read_from_its_environment_variable(key, tmp_path: Path) -> None:
    samples = {"endpoint": "https://cbr.example.test", "agent_id": "489654f2-363b-4ebf-966a-bdf079d97114",
               "backup_schedule": "6h", "agent_type": "cloud", "log_level": "debug",
               "log_format": "json", "tls_verify": "false", "one_file_system": "false",
               "request_timeout": "5", "heartbeat_interval": "5", "backup_processes": "2",
               "s3_endpoint": "https://obs.example.test", "s3_path_style": "true", "s3_connections": "8",
               "s3_retries": "2", "s3_tls_verify": "false", "limit_upload": "512", "limit_download": "1024",
               "allow_reload_identity_change": "true", "full_scan_interval": "5",
               "metrics_address": "127.0.0.1:9561", "compression": "fast",
               "metrics_textfile": "/var/lib/node_exporter/cbr_agent.prom"}
    value = samples.get(key.name, "some-value")
    env = {ENV_PREFIX + key.name.upper(): value, ENV_PREFIX + "STATE_DIR": str(tmp_path)}
    for name in ("credentials_file", "sk_file", "token_file", "password_file"):
        if key.name == name:
            env[ENV_PREFIX + name.upper()] = str(write(tmp_path / "f", 'sk = "x"\n' if name ==
                                                       "credentials_file" else "x\n"))
    settings = load_settings(config_file=None, environ=env)
    got = getattr(settings, key.name)
    assert got is not None and got != key.default, key.name


@pytest.mark.parametrize(("text", "expected"), [
    ("nonsense = 1\n", "unknown key 'nonsense'"),
    ('heartbeat_interval = "soon"\n', "key 'heartbeat_interval'"),
    ("heartbeat_interval = -1\n", "must be greater than 0"),
    ('agent_type = "robot"\n', "native or cloud"),
    ('endpoint = "ftp://x"\n', "http:// or https:// URL"),
    ('agent_id = "not-a-uuid"\n', "a UUID"),
    ('backup_schedule = "sometimes"\n', "daily HH:MM"),
    ('backup_schedule = "daily 25:00"\n', "time of day"),
    ('project_id = "a/b"\n', "not a project id"),
    ("tls_verify = 3\n", "true or false"),
    ("endpoint = [\n", "not valid TOML"),
    ("backup_processes = 0\n", "'auto' or a whole number of at least 1"),
    ('backup_processes = "many"\n', "neither 'auto' nor a whole number"),
    ("backup_processes = true\n", "key 'backup_processes'"),
    ("compression = 0\n", "auto, off, fast, max or a whole number from 1 to 19"),
    ('compression = "zip"\n', "neither auto, off, fast, max nor a zstd level"),
    ("compression = 22\n", "a zstd level from 1 to 19"),
])
def test_a_bad_file_names_the_file_the_key_and_the_expectation(tmp_path: Path, text: str,
                                                               expected: str) -> None:
    config = write(tmp_path / "agent.toml", text)
    with pytest.raises(ConfigError) as caught:
        load_settings(config_file=config, environ={})
    message = str(caught.value)
    assert str(config) in message and expected in message
    assert "\n" not in message


def test_bad_environment_value_names_the_variable() -> None:
    with pytest.raises(ConfigError, match=r"CBR_AGENT_HEARTBEAT_INTERVAL.*greater than 0"):
        load_settings(config_file=None, environ={ENV_PREFIX + "HEARTBEAT_INTERVAL": "0"})


def test_missing_chosen_config_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(config_file=tmp_path / "nope.toml", environ={})
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(environ={ENV_PREFIX + "CONFIG": str(tmp_path / "nope.toml")})


def test_secrets_are_refused_as_flags() -> None:
    for name in ("sk", "token", "security_token", "password"):
        with pytest.raises(ConfigError, match="cannot be given on the command line"):
            load_settings(config_file=None, environ={}, overrides={name: "s3cret"})


def test_secret_files_fill_in_what_is_unset(tmp_path: Path) -> None:
    creds = write(tmp_path / "creds.toml", 'ak = "AK1"\nsk = "SK-from-creds"\n')
    sk_file = write(tmp_path / "sk", "SK-from-file\n")
    token_file = write(tmp_path / "token", "TOKEN\n")
    settings = load_settings(config_file=None, environ={
        ENV_PREFIX + "CREDENTIALS_FILE": str(creds), ENV_PREFIX + "SK_FILE": str(sk_file),
        ENV_PREFIX + "TOKEN_FILE": str(token_file)})
    assert (settings.ak, settings.sk, settings.token) == ("AK1", "SK-from-file", "TOKEN")
    direct = load_settings(config_file=None, environ={
        ENV_PREFIX + "CREDENTIALS_FILE": str(creds), ENV_PREFIX + "SK": "SK-env"})
    assert direct.sk == "SK-env"  # set directly wins over the file


@pytest.mark.parametrize(("content", "expected"), [
    ('region = "x"\n', "unknown key 'region'"), ("sk = 1\n", "non-empty string"),
    ("sk = [\n", "not valid TOML"),
])
def test_bad_credentials_file(tmp_path: Path, content: str, expected: str) -> None:
    creds = write(tmp_path / "creds.toml", content)
    with pytest.raises(ConfigError, match=expected) as caught:
        load_settings(config_file=None, environ={ENV_PREFIX + "CREDENTIALS_FILE": str(creds)})
    assert "SECRET" not in str(caught.value)


def test_missing_or_empty_secret_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"key 'sk_file'.*does not exist"):
        load_settings(config_file=None, environ={ENV_PREFIX + "SK_FILE": str(tmp_path / "none")})
    empty = write(tmp_path / "empty", "\n")
    with pytest.raises(ConfigError, match=r"key 'token_file'.*empty"):
        load_settings(config_file=None, environ={ENV_PREFIX + "TOKEN_FILE": str(empty)})


def test_redacted_hides_every_secret(tmp_path: Path) -> None:
    settings = load_settings(config_file=None, environ={
        ENV_PREFIX + "SK": "sk-value", ENV_PREFIX + "TOKEN": "tok-value",
        ENV_PREFIX + "SECURITY_TOKEN": "st-value", ENV_PREFIX + "PASSWORD": "pw-value"})
    text = repr(settings.redacted())
    for secret in ("sk-value", "tok-value", "st-value", "pw-value"):
        assert secret not in text


def test_default_locations_for_a_user_follow_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import cbr_agent.config as config

    monkeypatch.setattr(config, "is_root", lambda: False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert config.default_config_file() == tmp_path / "cfg" / "cbr-agent" / "agent.toml"
    assert config.default_state_dir() == tmp_path / "data" / "cbr-agent"
    monkeypatch.setattr(config, "is_root", lambda: True)
    assert config.default_config_file() == Path("/etc/cbr-agent/agent.toml")
    assert config.default_state_dir() == Path("/var/lib/cbr-agent")


@given(st.integers(min_value=0, max_value=10**6), st.sampled_from("smhd"))
def test_schedule_intervals_in_config(number: int, unit: str) -> None:
    env = {ENV_PREFIX + "BACKUP_SCHEDULE": f"{number}{unit}"}
    if number == 0:
        try:
            load_settings(config_file=None, environ=env)
        except ConfigError as exc:
            assert "zero" in str(exc)
        else:
            raise AssertionError("a zero interval was accepted")
    else:
        assert load_settings(config_file=None, environ=env).backup_schedule == f"{number}{unit}"


def test_environment_can_choose_the_config_file(tmp_path: Path) -> None:
    config = write(tmp_path / "alt.toml", 'host_nickname = "alt"\n')
    settings = load_settings(environ={ENV_PREFIX + "CONFIG": str(config)})
    assert settings.host_nickname == "alt" and settings.config_file == config
    assert os.path.isabs(settings.state_dir)


_values = st.one_of(st.text(max_size=12), st.integers(-5, 10**6), st.floats(allow_nan=False, width=32),
                    st.booleans(), st.lists(st.integers(), max_size=2))


@given(st.dictionaries(st.one_of(st.sampled_from([k.name for k in KEYS]),
                                 st.from_regex(r"[a-z_]{1,12}", fullmatch=True)), _values, max_size=5))
def test_any_config_file_loads_or_is_refused_naming_file_and_key(tmp_path_factory, data) -> None:
    import tomli_w

    directory = tmp_path_factory.mktemp("cfg")
    config = directory / "agent.toml"
    config.write_text(tomli_w.dumps(data))
    config.chmod(0o600)  # a readable file holding a secret key is refused before any value is read
    try:
        settings = load_settings(config_file=config, environ={ENV_PREFIX + "STATE_DIR": str(directory)})
    except ConfigError as exc:
        message = str(exc)
        assert str(config) in message
        assert any(f"'{name}'" in message for name in data)
        assert "\n" not in message
    else:
        for name in data:
            assert name in Settings.__dataclass_fields__
        assert settings.config_file == config


def test_a_missing_secret_file_names_the_config_file_that_set_it(tmp_path: Path) -> None:
    config = write(tmp_path / "agent.toml", f'credentials_file = "{tmp_path / "gone.toml"}"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(config_file=config, environ={})
    message = str(caught.value)
    assert message.startswith(f"{config}: key 'credentials_file'") and "does not exist" in message


@pytest.mark.parametrize(("value", "expected"), [("auto", "auto"), ("AUTO", "auto"), (3, 3), ("1", 1)])
def test_backup_processes_is_auto_or_a_count(tmp_path: Path, value: object, expected: object) -> None:
    text = f"backup_processes = {value!r}\n".replace("'", '"')
    settings = load_settings(config_file=write(tmp_path / "agent.toml", text), environ={})
    assert settings.backup_processes == expected


def test_helper_processes_follow_backup_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    from cbr_agent import procpool

    assert procpool.helper_count(1) == 0 and procpool.helper_count(3) == 2
    monkeypatch.setattr(procpool, "usable_cpus", lambda: 2)
    assert procpool.helper_count("auto") == 1
    monkeypatch.setattr(procpool, "usable_cpus", lambda: 64)
    assert procpool.helper_count("auto") == procpool.AUTO_PROCESSES_MAX - 1
    monkeypatch.setattr(procpool, "usable_cpus", lambda: 1)
    assert procpool.helper_count("auto") == 0
