"""Layered configuration: built-in defaults < config file < environment < command-line flags.

Every key is declared once in :data:`KEYS` with its type, default and meaning; the README's table of
keys is this table. Every key is also read from ``CBR_AGENT_<KEY>`` in upper case. A file with an
unknown key, a wrong type or a bad value is refused with the file, the key and what is expected.
Secrets (``sk``, ``token``, ``password``) come from a file or the environment, never from a flag.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from cbr_agent.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

ENV_PREFIX = "CBR_AGENT_"
MAX_BACKUP_PROCESSES = 256
#: a schedule interval the daemon can still add to today's date (datetime ends in year 9999)
MAX_SCHEDULE_INTERVAL = 1_000_000 * 86400.0


def _shown(value: Any) -> str:
    """A value quoted for an error message, cut short: a hostile value must not flood the log."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _positive_float(value: Any) -> float:
    # bool is an int in Python, but 'true' seconds is a mistake; TOML dates and arrays are no numbers
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"{_shown(value)} is not a number")
    try:
        number = float(value)
    except (ValueError, OverflowError):
        raise ValueError(f"{_shown(value)} is not a number") from None
    if not math.isfinite(number):
        raise ValueError(f"{_shown(value)} is not a finite number")
    if number <= 0:
        raise ValueError("must be greater than 0")
    return number


def _positive_int(value: Any) -> int:
    if isinstance(value, bool) or not str(value).strip().isdigit() or int(str(value).strip()) < 1:
        raise ValueError(f"{value!r} is not a whole number of at least 1")
    return int(str(value).strip())


def _non_negative_float(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("must be a number")
    number = float(value)
    if not number >= 0:
        raise ValueError("must be 0 or more")
    return number


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError("must be true or false")


def _choice(*allowed: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        text = str(value)
        if text not in allowed:
            raise ValueError("must be one of " + ", ".join(allowed))
        return text

    return check


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("must be a string")
    if "\x00" in value:  # no path, URL or name can hold one; it would fail later, far from here
        raise ValueError("contains a NUL character")
    return value


def _url(value: Any) -> str:
    text = _text(value).strip()
    if not text.startswith(("http://", "https://")) or len(text) <= len("https://"):
        raise ValueError(f"{text!r} is not an http:// or https:// URL")
    return text.rstrip("/")


def _project_id(value: Any) -> str:
    text = _text(value).strip()
    if not text or any(ch in text for ch in "/?#% \t"):
        raise ValueError(f"{text!r} is not a project id")
    return text


def _uuid(value: Any) -> str:
    import uuid

    try:
        return str(uuid.UUID(_text(value).strip()))
    except ValueError:
        raise ValueError(f"{_shown(value)} is not a UUID") from None


def _processes(value: Any) -> int | str:
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    text = str(value).strip()
    if isinstance(value, bool) or not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise ValueError(f"{_shown(value)} is neither 'auto' nor a whole number of at least 1")
    if int(text) > MAX_BACKUP_PROCESSES:  # each is a process: a typo must not fork thousands
        raise ValueError(f"{_shown(value)} is more than {MAX_BACKUP_PROCESSES} processes")
    return int(text)


#: ``compression`` names (zstd levels); "auto" keeps the repository's own level
COMPRESSION_NAMES = {"off": 0, "fast": 1, "max": 19}
MAX_COMPRESSION_LEVEL = 19  # zstd's 20-22 need a window of up to 128 MiB per compressing thread


def _compression(value: Any) -> int | str:
    text = str(value).strip().lower()
    if isinstance(value, str) and (text == "auto" or text in COMPRESSION_NAMES):
        return text if text == "auto" else COMPRESSION_NAMES[text]
    if isinstance(value, bool) or not (text.isascii() and text.isdigit()) \
            or not 1 <= int(text) <= MAX_COMPRESSION_LEVEL:
        raise ValueError(f"{_shown(value)} is neither auto, off, fast, max nor a zstd level from 1 to "
                         f"{MAX_COMPRESSION_LEVEL}")
    return int(text)


def _host_port(value: Any) -> str:
    # shared with the server's --metrics-address
    from cbr_agent.hostport import parse_host_port

    text = _text(value).strip()
    parse_host_port(text)
    return text


def _prom_file(value: Any) -> str:
    text = _text(value).strip()
    if not text.endswith(".prom"):
        raise ValueError(f"{text!r} does not end in .prom (node_exporter's textfile collector reads "
                         "only *.prom files)")
    return text


def _schedule(value: Any) -> str:
    # the grammar lives with the scheduler (stdlib only, imports nothing of the package)
    from cbr_agent.agent.schedule import parse_schedule

    text = _text(value).strip()
    if len(text) > 100:
        raise ValueError(f"{_shown(text)} is too long")
    try:
        schedule = parse_schedule(text)
    except ArithmeticError:  # an interval of hundreds of digits
        raise ValueError(f"{_shown(text)} is too long an interval") from None
    if schedule.interval is not None and schedule.interval > MAX_SCHEDULE_INTERVAL:
        # the daemon adds it to a datetime: 10**40 days would overflow there, long after start
        raise ValueError(f"{_shown(text)} is longer than 1000000 days")
    return text


@dataclass(frozen=True)
class Key:
    name: str
    parse: Callable[[Any], Any]
    default: Any
    doc: str
    expected: str = "a string"
    secret: bool = False


KEYS: tuple[Key, ...] = (
    # control plane
    Key("endpoint", _url, None, "CBR endpoint URL; unset = embedded control plane in the state dir",
        "an http:// or https:// URL"),
    Key("project_id", _project_id, "local", "IAM project id used in every API path",
        "a project id (no '/', '?', '#', '%' or spaces)"),
    Key("ak", _text, None, "access key for AK/SK signing"),
    Key("sk", _text, None, "secret key for AK/SK signing (file or environment only)", secret=True),
    Key("token", _text, None, "IAM token sent as X-Auth-Token (file or environment only)", secret=True),
    Key("security_token", _text, None, "X-Security-Token of temporary AK/SK credentials "
        "(file or environment only)", secret=True),
    Key("credentials_file", _text, None, "TOML file holding any of ak, sk, token, security_token "
        "(written 0600 by 'register'), s3_access_key_id, s3_secret_access_key, s3_session_token; fills in "
        "what the config and environment leave unset"),
    Key("sk_file", _text, None, "file whose content is the secret key (e.g. a systemd credential)"),
    Key("token_file", _text, None, "file whose content is the IAM token"),
    Key("ca_bundle", _text, None, "CA bundle file for TLS verification of the endpoint"),
    Key("tls_verify", _boolean, True, "verify the endpoint's TLS certificate", "true or false"),
    Key("request_timeout", _positive_float, 30.0, "seconds before a control plane call times out",
        "a number of seconds > 0"),
    Key("heartbeat_interval", _positive_float, 60.0, "seconds between heartbeats (jittered)",
        "a number of seconds > 0"),
    Key("agent_type", _choice("native", "cloud"), "native", "agent type reported at registration",
        "native or cloud"),
    Key("host_nickname", _text, "", "host alias reported at registration"),
    Key("agent_id", _uuid, None, "pin the agent id instead of the generated one", "a UUID"),
    Key("allow_reload_identity_change", _boolean, False, "let a SIGHUP reload change endpoint, project_id "
        "or agent_id (set it in the new file); without it such a reload is refused", "true or false"),
    # local state and logging
    Key("state_dir", _text, None, "state directory (default /var/lib/cbr-agent as root, "
        "~/.local/share/cbr-agent otherwise)"),
    Key("log_level", _choice("debug", "info", "warning", "error"), "info", "log level",
        "debug, info, warning or error"),
    Key("log_format", _choice("text", "json"), "text", "log line format", "text or json"),
    # data plane
    Key("repository", _text, None, "repository URL or path (default file://<state_dir>/repository)"),
    Key("password", _text, None, "repository password (environment only: CBR_AGENT_PASSWORD)",
        secret=True),
    Key("password_file", _text, None, "file holding the repository password"),
    Key("backup_schedule", _schedule, None, "when the daemon backs up: an interval like '6h' or a daily "
        "time like 'daily 02:30'; unset = no scheduled backups",
        "an interval like '30m', '6h', '1d' or 'daily HH:MM'"),
    Key("one_file_system", _boolean, True, "stay on the file system of each backup path",
        "true or false"),
    Key("backup_processes", _processes, "auto", "processes a backup may use to read, compress and encrypt "
        "small files, and a restore to write them: 1 = the one process alone; auto = one per usable CPU, "
        "at most 4",
        "'auto' or a whole number of at least 1"),
    Key("compression", _compression, "auto", "zstd level of the blobs a backup stores: auto = the "
        "repository's (3 unless made otherwise), off, fast (1), max (19), or 1-19; read back whatever the "
        "level", "auto, off, fast, max or a whole number from 1 to 19"),
    # monitoring
    Key("metrics_address", _host_port, None, "serve the daemon's Prometheus metrics on this HOST:PORT "
        "(needs prometheus_client: the 'metrics' extra); unset = no metrics port",
        "HOST:PORT, e.g. 127.0.0.1:9561 or [::1]:9561"),
    Key("metrics_textfile", _prom_file, None, "write the daemon's Prometheus metrics to this file for "
        "node_exporter's textfile collector (atomically, at every change); unset = no file",
        "a file name ending in .prom"),
    # object storage (s3:// repositories) and bandwidth
    Key("s3_endpoint", _url, None, "S3 endpoint URL of an s3://BUCKET/PREFIX repository (OBS, MinIO, Ceph "
        "RGW); unset = AWS S3", "an http:// or https:// URL"),
    Key("s3_region", _text, None, "S3 region (default: AWS_REGION / the AWS config file, else us-east-1)"),
    Key("s3_path_style", _boolean, False, "path-style S3 URLs (endpoint/bucket/key), as MinIO and Ceph "
        "usually need; false = virtual-host style", "true or false"),
    Key("s3_connections", _positive_int, 4, "parallel S3 uploads (each holds one pack of about 8 MiB in "
        "memory)", "a whole number of at least 1"),
    Key("s3_retries", _positive_int, 8, "attempts per S3 request on throttling, 5xx and timeouts, with "
        "exponential backoff and jitter", "a whole number of at least 1"),
    Key("s3_ca_bundle", _text, None, "CA bundle file for TLS verification of the S3 endpoint"),
    Key("s3_tls_verify", _boolean, True, "verify the S3 endpoint's TLS certificate", "true or false"),
    Key("s3_access_key_id", _text, None, "S3 access key id (default: AWS_ACCESS_KEY_ID, ~/.aws/credentials)"),
    Key("s3_secret_access_key", _text, None, "S3 secret access key (credentials file or environment only; "
        "default: AWS_SECRET_ACCESS_KEY, ~/.aws/credentials)", secret=True),
    Key("s3_session_token", _text, None, "S3 session token of temporary credentials (credentials file or "
        "environment only)", secret=True),
    Key("limit_upload", _non_negative_float, 0.0, "repository upload limit in KiB/s (0 = none); "
        "--limit-upload", "a number of KiB/s >= 0"),
    Key("limit_download", _non_negative_float, 0.0, "repository download limit in KiB/s (0 = none); "
        "--limit-download", "a number of KiB/s >= 0"),
    Key("full_scan_interval", _positive_float, 86400.0, "seconds between the daemon's full scans; "
        "in between, scheduled backups scan only what the file change journal saw change",
        "a number of seconds > 0"),
)

KEYS_BY_NAME: Mapping[str, Key] = {k.name: k for k in KEYS}
#: secrets may come from a config file or the environment, never from a flag
SECRET_KEYS = frozenset(k.name for k in KEYS if k.secret)


def is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def default_config_file() -> Path:
    if is_root():
        return Path("/etc/cbr-agent/agent.toml")
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
    return Path(base) / "cbr-agent" / "agent.toml"


def default_state_dir() -> Path:
    if is_root():
        return Path("/var/lib/cbr-agent")
    base = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
    return Path(base) / "cbr-agent"


@dataclass(frozen=True)
class Settings:
    """The resolved configuration. Build it with :func:`load_settings`."""

    config_file: Path
    endpoint: str | None
    project_id: str
    ak: str | None
    sk: str | None
    token: str | None
    security_token: str | None
    credentials_file: str | None
    sk_file: str | None
    token_file: str | None
    ca_bundle: str | None
    tls_verify: bool
    request_timeout: float
    heartbeat_interval: float
    agent_type: str
    host_nickname: str
    agent_id: str | None
    allow_reload_identity_change: bool
    state_dir: Path
    log_level: str
    log_format: str
    repository: str
    password: str | None
    password_file: str | None
    backup_schedule: str | None
    one_file_system: bool
    backup_processes: int | str
    compression: int | str
    metrics_address: str | None
    metrics_textfile: str | None
    s3_endpoint: str | None
    s3_region: str | None
    s3_path_style: bool
    s3_connections: int
    s3_retries: int
    s3_ca_bundle: str | None
    s3_tls_verify: bool
    s3_access_key_id: str | None
    s3_secret_access_key: str | None
    s3_session_token: str | None
    limit_upload: float
    limit_download: float
    full_scan_interval: float = 86400.0

    def redacted(self) -> dict[str, Any]:
        """The settings as a dict with every secret replaced, for ``status`` and logs."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in SECRET_KEYS and value:
                value = "***"
            out[f.name] = str(value) if isinstance(value, Path) else value
        return out


def _parse(key: Key, value: Any, origin: str) -> Any:
    """One key's value, or a one-line ConfigError naming the origin (file, variable or option), the
    key and what is expected; whatever the value (tests/unit/test_config_values.py)."""
    try:
        return key.parse(value)
    except (TypeError, ValueError, ArithmeticError) as exc:
        reason = " ".join(str(exc).split())[:200]
        raise ConfigError(f"{origin}: key '{key.name}': {reason}; expected {key.expected}") from None


def read_config_file(path: Path, *, required: bool) -> dict[str, Any]:
    """Read and check one TOML file; an absent optional file is empty."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        if required:
            raise ConfigError(f"config file {path} does not exist",
                              hint="create it or point --config elsewhere") from None
        return {}
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    values: dict[str, Any] = {}
    for name, value in data.items():
        key = KEYS_BY_NAME.get(name)
        if key is None:
            raise ConfigError(f"{path}: unknown key '{name}'",
                              hint="see the README's table of configuration keys")
        values[name] = _parse(key, value, str(path))
    _refuse_readable_secrets(path, values, "config file")
    return values


def _refuse_readable_secrets(path: Path, values: Mapping[str, Any], what: str) -> None:
    """A file holding a secret must be private to its owner, as the server's credentials file."""
    if any(values.get(name) for name in SECRET_KEYS):
        from cbr_agent.privatefile import check_private

        try:
            check_private(path, what)
        except OSError as exc:
            raise ConfigError(f"cannot read {what} {path}: {exc.strerror}") from None


def read_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key in KEYS:
        env_name = ENV_PREFIX + key.name.upper()
        if env_name in environ and environ[env_name] != "":
            values[key.name] = _parse(key, environ[env_name], f"environment {env_name}")
    return values


#: what a credentials file may hold
CREDENTIAL_KEYS = ("ak", "sk", "token", "security_token", "s3_access_key_id", "s3_secret_access_key",
                   "s3_session_token")


def _read_secret_text(path: Path, key: str) -> str:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise ConfigError(f"key '{key}': file {path} does not exist",
                          hint="create it or correct the setting") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or "not UTF-8 text"
        raise ConfigError(f"key '{key}': cannot read {path}: {reason}") from None
    if not text:
        raise ConfigError(f"key '{key}': file {path} is empty", hint="put the secret in it")
    return text


def read_credentials_file(path: Path) -> dict[str, str]:
    """The ak/sk/token/security_token a credentials file holds (TOML, string values only)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"key 'credentials_file': file {path} does not exist",
                          hint="create it or correct the setting") from None
    except OSError as exc:
        raise ConfigError(f"key 'credentials_file': cannot read {path}: {exc.strerror}") from None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"credentials file {path} is not valid TOML: {exc}") from None
    out: dict[str, str] = {}
    for name, value in data.items():
        if name not in CREDENTIAL_KEYS:
            raise ConfigError(f"{path}: unknown key '{name}'; expected only "
                              + ", ".join(CREDENTIAL_KEYS))
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{path}: key '{name}': expected a non-empty string")
        out[name] = value
    _refuse_readable_secrets(path, out, "credentials file")
    return out


def _read_secret_files(values: Mapping[str, Any], origins: Mapping[str, str]) -> dict[str, Any]:
    """Secrets from sk_file/token_file/credentials_file, for what config and environment left unset.

    An error names where the setting came from (the config file, the variable or the option)."""
    found: dict[str, Any] = {}
    try:
        key = "sk_file"
        if values.get("sk_file") and not values.get("sk"):
            found["sk"] = _read_secret_text(Path(values["sk_file"]).expanduser(), "sk_file")
        key = "token_file"
        if values.get("token_file") and not values.get("token"):
            found["token"] = _read_secret_text(Path(values["token_file"]).expanduser(), "token_file")
        key = "credentials_file"
        if values.get("credentials_file"):
            creds = read_credentials_file(Path(values["credentials_file"]).expanduser())
            for name, value in creds.items():
                if not values.get(name) and name not in found:
                    found[name] = value
    except ConfigError as exc:
        origin = origins.get(key)
        if origin is None:
            raise
        raise ConfigError(f"{origin}: {exc.message}", hint=exc.hint or None) from None
    return found


def load_settings(
    *,
    config_file: str | os.PathLike[str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    config_must_exist: bool = True,
) -> Settings:
    """Resolve defaults < file < environment < ``overrides`` (the command-line flags).

    ``overrides`` with a ``None`` value are ignored, so argparse defaults can be passed as they are.
    A config file named explicitly must exist, unless ``config_must_exist`` is false (commands that
    write it, such as ``init``).
    """
    env = os.environ if environ is None else environ
    chosen = config_file or env.get(ENV_PREFIX + "CONFIG")
    path = Path(chosen) if chosen else default_config_file()
    values: dict[str, Any] = {k.name: k.default for k in KEYS}
    origins: dict[str, str] = {}  # where each set value came from, for error messages
    from_file = read_config_file(path, required=bool(chosen) and config_must_exist)
    values.update(from_file)
    origins.update(dict.fromkeys(from_file, str(path)))
    from_env = read_environment(env)
    values.update(from_env)
    origins.update({name: f"environment {ENV_PREFIX}{name.upper()}" for name in from_env})
    for name, value in (overrides or {}).items():
        if value is None:
            continue
        if name in SECRET_KEYS:
            raise ConfigError(f"'{name}' cannot be given on the command line",
                              hint=f"use {ENV_PREFIX}{name.upper()} or a file")
        origins[name] = f"option --{name.replace('_', '-')}"
        values[name] = _parse(KEYS_BY_NAME[name], value, origins[name])
    values.update(_read_secret_files(values, origins))
    state_dir = Path(values["state_dir"]).expanduser() if values["state_dir"] else default_state_dir()
    values["state_dir"] = state_dir.absolute()
    if not values["repository"]:
        values["repository"] = (state_dir / "repository").absolute().as_uri()
    return Settings(config_file=path, **values)
