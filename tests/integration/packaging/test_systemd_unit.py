"""The systemd unit: systemd-analyze accepts it, and it says what the service must be."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import defaultdict
from pathlib import Path

import pytest

from tests.integration.packaging.conftest import REPO

UNIT = REPO / "service" / "cbr-agent.service"
EXEC = "/opt/cbr-agent/venv/bin/cbr-agent"

pytestmark = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                reason="systemd-analyze is not installed")


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """section -> key -> every value given (systemd allows a key more than once)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], defaultdict(list))
            continue
        assert current is not None, f"key outside a section: {line}"
        key, _, value = line.partition("=")
        current[key.strip()].append(value.strip())
    return sections


@pytest.fixture(scope="module")
def unit() -> dict[str, dict[str, list[str]]]:
    return parse_unit(UNIT.read_text(encoding="utf-8"))


def verifiable_copy(tmp_path: Path, executable: Path | None = None) -> Path:
    """The unit with ExecStart pointing at an executable that exists here (verify checks it)."""
    if executable is None:
        executable = tmp_path / "venv" / "bin" / "cbr-agent"
        executable.parent.mkdir(parents=True)
        executable.write_text("#!/bin/sh\nexit 0\n")
        executable.chmod(0o755)
    copy = tmp_path / "cbr-agent.service"
    copy.write_text(UNIT.read_text(encoding="utf-8").replace(EXEC, str(executable)), encoding="utf-8")
    return copy


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["systemd-analyze", *args], capture_output=True, text=True, timeout=60)


def test_systemd_analyze_verify_passes_without_a_warning(tmp_path: Path) -> None:
    proc = analyze("verify", str(verifiable_copy(tmp_path)))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == "", proc.stderr


def test_verify_does_catch_a_broken_unit(tmp_path: Path) -> None:
    """The check above can fail: verify reports a bad value or a misspelt key (on stderr; it still
    exits 0 for these, which is why the test above also demands an empty stderr)."""
    copy = verifiable_copy(tmp_path)
    copy.write_text(copy.read_text().replace("ProtectSystem=strict", "ProtectSystem=sometimes")
                    .replace("WatchdogSec=", "WatchdogSecs="))
    proc = analyze("verify", str(copy))
    assert "protect system value" in proc.stderr
    assert "Unknown key 'WatchdogSecs'" in proc.stderr


def test_exposure_score_is_low(tmp_path: Path) -> None:
    proc = analyze("security", "--offline=true", str(verifiable_copy(tmp_path)))
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", proc.stdout + proc.stderr)
    assert match, proc.stdout + proc.stderr
    assert float(match.group(1)) <= 3.0, proc.stdout


def test_service_is_a_notify_service_with_watchdog_and_restart_limit(unit) -> None:
    service, section = unit["Service"], unit["Unit"]
    assert service["Type"] == ["notify"]
    assert service["ExecStart"] == [f"{EXEC} run"]
    assert int(service["WatchdogSec"][0]) > 0
    assert service["Restart"] == ["on-failure"]
    assert int(section["StartLimitBurst"][0]) >= 1 and int(section["StartLimitIntervalSec"][0]) > 0
    # a configuration error (exit 2) cannot be fixed by restarting
    assert "2" in service["RestartPreventExitStatus"][0].split()
    assert "network-online.target" in section["After"][0].split()
    assert "network-online.target" in section["Wants"][0].split()
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]
    # reload is SIGHUP, sent by the shell's builtin kill: minimal systems have no /bin/kill
    assert service["ExecReload"] == ["/bin/sh -c 'kill -HUP $$MAINPID'"]


def test_service_is_hardened_for_a_reading_agent(unit) -> None:
    service = unit["Service"]
    assert service["ProtectSystem"] == ["strict"]
    assert service["ProtectHome"] == ["read-only"]
    assert service["PrivateTmp"] == ["yes"]
    assert service["NoNewPrivileges"] == ["yes"]
    caps = set(service["CapabilityBoundingSet"][0].split())
    assert "CAP_DAC_READ_SEARCH" in caps
    assert caps <= {"CAP_DAC_READ_SEARCH", "CAP_FOWNER"}, caps
    writable = set(service["ReadWritePaths"][0].split())
    assert writable == {"/var/lib/cbr-agent", "/var/cache/cbr-agent"}
    assert service["StateDirectoryMode"] == ["0700"]
    assert service["UMask"] == ["0077"]


def test_environment_file_is_optional_and_under_the_root_only_config_dir(unit) -> None:
    assert unit["Service"]["EnvironmentFile"] == ["-/etc/cbr-agent/agent.env"]
    tmpfiles = (REPO / "service" / "cbr-agent.tmpfiles").read_text(encoding="utf-8")
    assert re.search(r"^d /etc/cbr-agent\s+0700 root root", tmpfiles, re.M)
    assert re.search(r"^d /var/lib/cbr-agent\s+0700 root root", tmpfiles, re.M)


def test_environment_sample_holds_no_active_setting() -> None:
    lines = (REPO / "service" / "agent.env").read_text(encoding="utf-8").splitlines()
    active = [line for line in lines if line.strip() and not line.lstrip().startswith("#")]
    assert active == []
