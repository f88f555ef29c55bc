"""Every bad start option of ``cbr-agent server`` is one line and exit 2, never an internal error
(issue 9.7). Each case is a real ``python -m cbr_agent server`` that must refuse to start."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[dict[str, Path]]:
    creds = tmp_path / "creds.toml"
    creds.write_text('[[tokens]]\ntoken = "t"\nproject_id = "p"\n')
    os.chmod(creds, 0o600)
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    not_db = tmp_path / "not-a-db"
    not_db.write_bytes(b"x" * 200)
    bad_toml = tmp_path / "bad.toml"
    bad_toml.write_text("[[tokens]\n")
    os.chmod(bad_toml, 0o600)
    yield {"dir": tmp_path, "creds": creds, "junk": junk, "not_db": not_db, "bad_toml": bad_toml,
           "db": tmp_path / "cp.db"}


CASES = {
    # case: (arguments replacing the defaults, words the one line must hold)
    "port too high": ({"--port": "99999"}, ["--port must be from 0 to 65535", "99999"]),
    "port negative": ({"--port": "-1"}, ["--port must be from 0 to 65535"]),
    "port not a number": ({"--port": "http"}, ["--port", "invalid int value"]),
    "empty host": ({"--host": ""}, ["--host is empty"]),
    "host not of this machine": ({"--host": "192.0.2.1"}, ["cannot listen on 192.0.2.1"]),
    "host malformed": ({"--host": "a" * 300}, ["cannot listen on"]),
    "stale-after nan": ({"--stale-after": "nan"}, ["--stale-after must be a positive number"]),
    "read-timeout zero": ({"--read-timeout": "0"}, ["--read-timeout must be a positive number"]),
    "read-timeout inf": ({"--read-timeout": "inf"}, ["--read-timeout must be a positive number"]),
    "max-connections zero": ({"--max-connections": "0"}, ["--max-connections must be at least 1"]),
    "db empty": ({"--db": ""}, ["--db is empty"]),
    "db a directory": ({"--db": "{dir}"}, ["--db", "is a directory"]),
    "db not a database": ({"--db": "{not_db}"}, ["--db", "not a database"]),
    "db under a file": ({"--db": "{not_db}/cp.db"}, ["--db", "cannot open"]),
    "credentials missing": ({"--credentials": "{dir}/missing.toml"}, ["does not exist"]),
    "credentials a directory": ({"--credentials": "{dir}"}, ["--credentials", "is a directory"]),
    "credentials empty name": ({"--credentials": ""}, ["--credentials is empty"]),
    "credentials not TOML": ({"--credentials": "{bad_toml}"}, ["not valid TOML"]),
    "tls not PEM": ({"--tls-cert": "{junk}", "--tls-key": "{junk}"}, ["cannot be used", "PEM"]),
    "tls cert missing": ({"--tls-cert": "{dir}/no.pem", "--tls-key": "{junk}"}, ["does not exist"]),
    "tls key alone": ({"--tls-key": "{junk}"}, ["go together"]),
}


def run_server(args: dict[str, str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "cbr_agent", "server"]
    for option, value in args.items():
        argv += [option, value]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})


def assert_one_line_exit_2(result: subprocess.CompletedProcess[str], words: list[str]) -> None:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and lines[0].startswith("cbr-agent: error: "), result.stderr
    assert "internal error" not in result.stderr and "Traceback" not in result.stderr
    for word in words:
        assert word in lines[0], lines[0]


@pytest.mark.parametrize("case", list(CASES))
def test_bad_start_option_is_one_line_and_exit_2(setup: dict[str, Path], case: str) -> None:
    changes, words = CASES[case]
    args = {"--host": "127.0.0.1", "--port": "0", "--db": str(setup["db"]),
            "--credentials": str(setup["creds"])}
    args.update({k: v.format(**{name: str(p) for name, p in setup.items()}) for k, v in changes.items()})
    assert_one_line_exit_2(run_server(args), words)
    assert case.startswith("db") or not setup["db"].exists()  # refused before the database was made


def test_port_in_use_and_bad_config_value(setup: dict[str, Path]) -> None:
    base = {"--host": "127.0.0.1", "--db": str(setup["db"]), "--credentials": str(setup["creds"])}
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_server({**base, "--port": str(port)})
    assert_one_line_exit_2(result, [f"cannot listen on 127.0.0.1:{port}"])
    result = run_server({**base, "--port": "0"}, env={"CBR_AGENT_HEARTBEAT_INTERVAL": "abc"})
    assert_one_line_exit_2(result, ["environment CBR_AGENT_HEARTBEAT_INTERVAL", "key 'heartbeat_interval'",
                                    "'abc' is not a number", "expected a number of seconds > 0"])
