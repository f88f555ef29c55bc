"""Whatever value a key is given, in the config file or in ``CBR_AGENT_*``, the answer is the parsed
value or one ConfigError line naming the source, the key and what is expected (issue 9.7): never
"could not convert string to float", an OverflowError or a NaN heartbeat."""

from __future__ import annotations

import datetime
import json
import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from cbr_agent.config import ENV_PREFIX, KEYS, KEYS_BY_NAME, read_config_file, read_environment
from cbr_agent.errors import ConfigError

KEY_NAMES = [k.name for k in KEYS]
NUMBER_KEYS = [k.name for k in KEYS if k.expected == "a number of seconds > 0"]

# text that TOML and UTF-8 can carry: no surrogates
texts = st.text(st.characters(exclude_categories=("Cs",)), max_size=60)
hostile_texts = st.one_of(
    texts,
    st.sampled_from(["abc", "", " ", "nan", "NaN", "inf", "-inf", "1e400", "-1", "0", "0.0", "1_0", "٣",
                     "²", "0x10", "true", "auto ", "daily 24:00", "1" * 400 + "h", "1" * 5000, "6h\x00",
                     "http://", "https://x", "not-a-uuid"]),
)


def toml_value(value: object) -> str:
    """A TOML literal for a value of the strategies below."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value == math.inf else
                                                "-inf" if value == -math.inf else repr(value))
    if isinstance(value, (int, datetime.date, datetime.time)):
        return value.isoformat() if not isinstance(value, int) else str(value)
    if isinstance(value, str):
        # JSON's escapes are TOML basic-string escapes; TOML also wants DEL escaped
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"k{i} = {toml_value(v)}" for i, v in enumerate(value.values())) + "}"
    raise AssertionError(value)


scalars = st.one_of(
    st.booleans(), st.integers(), st.integers(min_value=10**300, max_value=10**400),
    st.floats(), st.sampled_from([0.0, -0.0, 1e308, 5e-324]), hostile_texts,
    st.dates(), st.times(),
)
toml_values = st.one_of(scalars, st.lists(scalars, max_size=3), st.dictionaries(texts, scalars, max_size=2))


def check_outcome(name: str, parse: callable, source: str) -> None:  # type: ignore[valid-type]
    try:
        value = parse()
    except ConfigError as exc:
        message = str(exc)
        assert "\n" not in message and len(message) < 600, message
        assert source in message and f"key '{name}'" in message, message
        assert f"expected {KEYS_BY_NAME[name].expected}" in message, message
        return
    if name in NUMBER_KEYS:  # what is accepted is usable
        assert isinstance(value, float) and math.isfinite(value) and value > 0, value
    if name == "backup_processes":
        assert value == "auto" or 1 <= value <= 256, value


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(KEY_NAMES), value=toml_values)
@example(name="heartbeat_interval", value="abc")
@example(name="heartbeat_interval", value=float("nan"))
@example(name="request_timeout", value=10**400)
@example(name="backup_schedule", value="9" * 400 + "h")
def test_any_value_in_the_config_file_is_parsed_or_named(tmp_path: Path, name: str, value: object) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(f"{name} = {toml_value(value)}\n", encoding="utf-8")
    path.chmod(0o600)  # a secret key in a readable file is refused before its value is looked at
    check_outcome(name, lambda: read_config_file(path, required=True)[name], str(path))


@settings(max_examples=500, deadline=None)
@given(name=st.sampled_from(KEY_NAMES), value=hostile_texts.filter(lambda t: "\x00" not in t and t != ""))
@example(name="heartbeat_interval", value="abc")
@example(name="request_timeout", value="nan")
@example(name="backup_processes", value="1" * 5000)
def test_any_value_in_the_environment_is_parsed_or_named(name: str, value: str) -> None:
    variable = ENV_PREFIX + name.upper()
    check_outcome(name, lambda: read_environment({variable: value})[name], f"environment {variable}")


@pytest.mark.parametrize(("text", "words"), [
    ('heartbeat_interval = "abc"', ["'abc' is not a number", "expected a number of seconds > 0"]),
    ("heartbeat_interval = nan", ["not a finite number"]),
    ("request_timeout = inf", ["not a finite number"]),
    ("request_timeout = true", ["True is not a number"]),
    ("heartbeat_interval = 1979-05-27", ["is not a number"]),
    ('state_dir = "/var/\\u0000x"', ["NUL"]),
    ('backup_schedule = "1000001d"', ["longer than 1000000 days"]),
    ('backup_schedule = "' + "9" * 60 + 'd"', ["longer than 1000000 days"]),
    ("backup_processes = 100000000000000000000", ["more than 256 processes"]),
    ('backup_processes = "\u0663"', ["neither 'auto' nor a whole number"]),
])
def test_bad_values_say_what_is_wrong_in_words(tmp_path: Path, text: str, words: list[str]) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(text + "\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        read_config_file(path, required=True)
    assert "could not convert" not in str(caught.value)
    for word in words:
        assert word in str(caught.value)


@pytest.mark.parametrize(("raw", "level"), [
    ("auto", "auto"), (" AUTO ", "auto"), ("off", 0), ("fast", 1), ("Max", 19), ("7", 7), (7, 7), (19, 19),
])
def test_compression_names_and_levels(tmp_path: Path, raw: object, level: object) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(f"compression = {toml_value(raw) if not isinstance(raw, str) else json.dumps(raw)}\n")
    assert read_config_file(path, required=True)["compression"] == level


@pytest.mark.parametrize("raw", ["0", "20", "-1", "zip", "1.5", True, 0, 22])
def test_compression_refuses_what_is_no_level(tmp_path: Path, raw: object) -> None:
    """0 would be zstd's default level, not "off": only the name says off."""
    path = tmp_path / "agent.toml"
    path.write_text(f"compression = {toml_value(raw) if not isinstance(raw, str) else json.dumps(raw)}\n")
    with pytest.raises(ConfigError, match="compression"):
        read_config_file(path, required=True)
