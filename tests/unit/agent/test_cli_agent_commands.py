"""The agent's CLI commands in-process (``cli.main.run``) on the embedded control plane."""

from __future__ import annotations

import json
import os
import stat
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cbr_agent.agent.configfile import persist_registration
from cbr_agent.agent.once import run_once
from cbr_agent.agent.state import load_agent_state
from cbr_agent.cli.main import run
from cbr_agent.config import load_settings
from cbr_agent.controlplane.embedded import EmbeddedControlPlane
from cbr_agent.errors import BackupError, Cancelled

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


class Host:
    """One host's config file and state dir, and a way to run the CLI there."""

    def __init__(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.config = tmp_path / "etc" / "agent.toml"
        self.config.parent.mkdir()
        self.config.write_text("")
        self.state = tmp_path / "state"
        self.capsys = capsys

    def __call__(self, *args: str) -> tuple[int, str, str]:
        code = run([*args, "--config", str(self.config), "--state-dir", str(self.state)])
        out, err = self.capsys.readouterr()
        return code, out, err

    def settings(self) -> Any:
        return load_settings(config_file=self.config, overrides={"state_dir": str(self.state)})

    def control_plane(self) -> EmbeddedControlPlane:
        return EmbeddedControlPlane(self.state / "controlplane.db", "local")

    def agent_id(self) -> str:
        return json.loads((self.state / "identity.json").read_text())["agent_id"]


@pytest.fixture
def host(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Host:
    return Host(tmp_path, capsys)


def test_run_once_without_paths_exits_0_and_says_how_to_add_one(host: Host) -> None:
    code, out, err = host("run", "--once")
    assert code == 0, err
    assert "registered" in out and "cbr-agent path add" in out
    assert "Traceback" not in err
    cp = host.control_plane()
    assert cp.show_agent(host.agent_id()).status == "normal"


def test_register_is_idempotent_and_writes_the_configuration(host: Host) -> None:
    code, out, _ = host("register", "--host-nickname", "web-1", "--heartbeat-interval", "15")
    assert code == 0 and "wrote configuration" in out
    written = tomllib.loads(host.config.read_text())
    assert written == {"host_nickname": "web-1", "heartbeat_interval": 15.0}
    first_id = host.agent_id()
    code, out, _ = host("register", "--host-nickname", "web-1", "--heartbeat-interval", "15")
    assert code == 0 and "already up to date" in out
    assert host.agent_id() == first_id
    agents = host.control_plane().list_agents()
    assert [a.agent_id for a in agents.agents] == [first_id]
    assert agents.agents[0].host_nickname == "web-1"
    code, out, _ = host("register", "--json")
    assert json.loads(out)["agent_id"] == first_id and json.loads(out)["config_changed"] is False


def test_register_creates_a_chosen_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "new" / "agent.toml"
    code = run(["register", "--config", str(config), "--state-dir", str(tmp_path / "s"),
                "--agent-type", "cloud"])
    assert code == 0, capsys.readouterr().err
    assert tomllib.loads(config.read_text()) == {"agent_type": "cloud"}


def test_secrets_from_the_environment_go_to_a_0600_credentials_file(host: Host) -> None:
    settings = host.settings()
    environ = {"CBR_AGENT_SK": "sk-secret-value", "CBR_AGENT_AK": "AK1"}
    written = persist_registration(settings, {"endpoint": "https://cbr.example.test", "ak": "AK1"},
                                   environ=environ)
    creds = host.config.parent / "credentials.toml"
    assert written.config_changed and written.credentials_file == creds
    assert stat.S_IMODE(creds.stat().st_mode) == 0o600
    assert tomllib.loads(creds.read_text()) == {"sk": "sk-secret-value", "ak": "AK1"}
    config_text = host.config.read_text()
    assert "sk-secret-value" not in config_text
    assert tomllib.loads(config_text)["credentials_file"] == str(creds)
    loaded = load_settings(config_file=host.config, environ={})
    assert (loaded.ak, loaded.sk) == ("AK1", "sk-secret-value")
    again = persist_registration(settings, {"endpoint": "https://cbr.example.test", "ak": "AK1"},
                                 environ=environ)
    assert again.credentials_file is None  # unchanged: not rewritten


@pytest.mark.parametrize("flag", ["--sk", "--token", "--password"])
def test_secret_flags_are_refused_with_a_hint(host: Host, flag: str) -> None:
    code, _, err = host("register", flag, "hunter2")
    assert code == 2
    assert "ps" in err and "CBR_AGENT_" in err and "hunter2" not in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_path_add_list_remove_say_what_happened(host: Host, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "data dir"
    (data / "sub").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    code, out, err = host("path", "add", "data dir", "-e", "*.tmp", "-e", str(data / "sub"))
    assert code == 0, err
    assert f"added: {data} (excluding *.tmp, {data / 'sub'})" in out
    assert f"relative path 'data dir' taken as {data}" in err
    code, out, err = host("path", "add", str(data), str(tmp_path / "not-yet"))
    assert code == 0
    assert f"already there: {data}" in out and f"added: {tmp_path / 'not-yet'}" in out
    assert "does not exist (yet); added anyway" in err
    code, out, _ = host("path", "list", "--json")
    listed = json.loads(out)["paths"]
    assert [p["dir_path"] for p in listed] == [str(data), str(tmp_path / "not-yet")]
    assert listed[0]["excludes"] == ["*.tmp", str(data / "sub")]
    code, out, _ = host("path", "remove", str(tmp_path / "not-yet"), "/never/added")
    assert code == 0
    assert f"removed: {tmp_path / 'not-yet'}" in out and "not there: /never/added" in out
    code, out, _ = host("path", "list")
    assert out.strip() == f"{data} (excluding *.tmp, {data / 'sub'})"
    code, out, _ = host("status", "--json")
    assert [p["dir_path"] for p in json.loads(out)["paths"]] == [str(data)]


@pytest.mark.parametrize(("args", "code", "message"), [
    (("path", "add", "/a,b"), 2, "comma"),
    (("path", "add", "/data", "-e", "/elsewhere"), 2, "not inside any of the paths"),
    (("path", "add", "/data", "-e", "../up"), 2, "'..'"),
    (("path", "add"), 2, "required"),
    (("path",), 2, "required"),
    (("frobnicate",), 2, "invalid choice"),
    (("status", "--bogus"), 2, "unrecognized arguments"),
    (("run", "--agent-id", "nope"), 2, "not a UUID"),
])
def test_bad_input_gets_one_line_and_its_exit_code(host: Host, args: tuple[str, ...], code: int,
                                                   message: str) -> None:
    got, _, err = host(*args)
    assert got == code, err
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_path_commands_on_a_host_never_registered(host: Host) -> None:
    assert host("path", "remove", "/x") == (0, "not there: /x\n", "")
    code, out, _ = host("path", "list")
    assert code == 0 and "no backup paths" in out
    assert not (host.state / "identity.json").exists()


def test_path_commands_for_an_agent_deleted_on_the_control_plane(host: Host) -> None:
    host("register")
    host.control_plane().remove_agent(host.agent_id())
    for args in (("path", "remove", "/x"), ("path", "list")):
        code, _, err = host(*args)
        assert code == 6 and "not registered" in err and "cbr-agent register" in err
        assert len(err.strip().splitlines()) == 1
    code, out, _ = host("path", "add", "/srv")  # add registers it again, as register would
    assert code == 0 and "added: /srv" in out


def test_bad_config_file_is_refused_naming_file_and_key(host: Host) -> None:
    host.config.write_text('heartbeat_interval = "often"\n')
    code, _, err = host("status")
    assert code == 2 and str(host.config) in err and "heartbeat_interval" in err
    assert "Traceback" not in err


def test_debug_shows_the_traceback(host: Host) -> None:
    host.config.write_text("unknown_key = 1\n")
    code, _, err = host("status", "--debug")
    assert code == 2 and "Traceback" in err


def test_status_without_daemon_and_without_secrets(host: Host, monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, _ = host("status")
    assert code == 0 and "not running" in out and "agent id:" in out
    monkeypatch.setenv("CBR_AGENT_SK", "super-secret-sk")
    monkeypatch.setenv("CBR_AGENT_TOKEN", "super-secret-token")
    host("register")
    for args in (("status",), ("status", "--json")):
        code, out, err = host(*args)
        assert code == 0
        assert "super-secret" not in out + err
    report = json.loads(host("status", "--json")[1])
    assert report["registered"] is True and report["daemon"] == {"running": False, "pid": None}


def test_uninstall_marks_and_remove_deletes(host: Host) -> None:
    assert host("register")[0] == 0
    agent_id = host.agent_id()
    code, out, _ = host("uninstall")
    assert code == 0 and "marked 'uninstall'" in out
    assert host.control_plane().show_agent(agent_id).status == "uninstall"
    code, _, err = host("uninstall", "--remove")  # not on a terminal: --yes is required
    assert code == 2 and "--yes" in err and len(err.strip().splitlines()) == 1
    assert host.control_plane().show_agent(agent_id).status == "uninstall"
    code, out, err = host("uninstall", "--remove", "--yes")
    assert code == 0 and "deletes all of its backups" in err
    assert host.control_plane().list_agents().agents == ()
    assert json.loads(host("status", "--json")[1])["registered"] is False


def test_uninstall_before_register_says_so(host: Host) -> None:
    code, _, err = host("uninstall")
    assert code == 1 and "never registered" in err


class RecordingJob:
    """Stands in for the backup engine, which has its own tests: records what the agent hands it."""

    def __init__(self, behaviour: Callable[[threading.Event], Any] | None = None) -> None:
        self.calls: list[tuple[Any, list[Any]]] = []
        self.behaviour = behaviour

    def factory(self) -> Callable[..., Any]:
        return self

    def __call__(self, settings: Any, paths: list[Any], *, cancel: threading.Event) -> Any:
        self.calls.append((settings, paths))
        if self.behaviour is not None:
            return self.behaviour(cancel)
        return Summary("snap-1", [])


class Summary:
    def __init__(self, snapshot_id: str, warnings: list[str]) -> None:
        self.snapshot_id, self.warnings = snapshot_id, warnings

    def to_dict(self) -> dict[str, Any]:
        return {"snapshot_id": self.snapshot_id, "warnings": self.warnings}


def test_run_once_backs_up_the_synced_paths_and_records_it(host: Host, tmp_path: Path) -> None:
    host("path", "add", str(tmp_path), "-e", "*.log")
    job = RecordingJob()
    result = run_once(host.settings(), job=job.factory)
    settings, paths = job.calls[0]
    assert settings.agent_id == host.agent_id()  # snapshots get tagged with the agent id
    assert [(p.dir_path, p.excludes) for p in paths] == [(str(tmp_path), ("*.log",))]
    assert result.backup is not None and result.backup["snapshot_id"] == "snap-1"
    assert load_agent_state(host.state)["last_backup"]["status"] == "ok"
    _, out, _ = host("status")
    assert "last backup:     ok at" in out and "snapshot snap-1" in out


def test_run_once_with_unreadable_files_exits_3(host: Host, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    from cbr_agent.cli.agent import _run_once

    host("path", "add", str(tmp_path))
    job = RecordingJob(lambda cancel: Summary("snap-2", ["/x: permission denied"]))
    assert _run_once(host.settings(), job=job.factory) == 3
    out, err = capsys.readouterr()
    assert "snapshot snap-2" in out and "1 warning:" in err
    assert load_agent_state(host.state)["last_backup"]["status"] == "warnings"


def test_run_once_failures_and_cancellation_are_errors(host: Host, tmp_path: Path) -> None:
    host("path", "add", str(tmp_path))

    def fail(cancel: threading.Event) -> Any:
        raise BackupError("repository unreachable")

    with pytest.raises(BackupError, match="repository unreachable"):
        run_once(host.settings(), job=RecordingJob(fail).factory)
    assert load_agent_state(host.state)["last_backup"]["status"] == "failed"

    def cancelled(cancel: threading.Event) -> Any:
        raise Cancelled("stopped")

    with pytest.raises(Cancelled):
        run_once(host.settings(), job=RecordingJob(cancelled).factory)


def test_run_once_with_the_real_engine(host: Host, tmp_path: Path) -> None:
    data = tmp_path / "tree"
    (data / "keep").mkdir(parents=True)
    (data / "keep" / "a.txt").write_text("hello")
    (data / "skip.tmp").write_text("no")
    host("path", "add", str(data), "-e", "*.tmp")
    code, out, err = host("run", "--once")
    assert code == 0, err
    assert "backed up 1 path: snapshot" in out
    last = load_agent_state(host.state)["last_backup"]
    assert last["status"] == "ok" and last["snapshot_id"]


def test_run_once_backs_up_the_cached_paths_while_the_control_plane_is_away(
        host: Host, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    data = tmp_path / "tree"
    data.mkdir()
    (data / "a.txt").write_text("kept while offline")
    host("path", "add", str(data))  # synced with the (embedded) control plane and cached
    with socket.socket() as s:  # a port nobody listens on: connection refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    host.config.write_text(f'endpoint = "http://127.0.0.1:{port}"\n')
    monkeypatch.setenv("CBR_AGENT_TOKEN", "not-needed-when-nobody-answers")
    code, out, err = host("run", "--once")
    assert code == 4, err
    assert "backed up 1 path: snapshot" in out and "registered" not in out
    assert "control plane is unavailable" in err and "paths cached at" in err
    state = load_agent_state(host.state)
    assert state["last_backup"]["status"] == "ok" and state["last_error"]
    monkeypatch.delenv("CBR_AGENT_TOKEN")
    host.config.write_text("")
    code, out, _ = host("snapshots")
    assert code == 0 and str(data) in out


def test_run_once_without_a_cache_still_fails_when_the_control_plane_is_away(
        host: Host, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    host.config.write_text(f'endpoint = "http://127.0.0.1:{port}"\n')
    monkeypatch.setenv("CBR_AGENT_TOKEN", "x")
    code, out, err = host("run", "--once")
    assert code == 4 and "backed up" not in out and "Traceback" not in err


def test_state_dir_that_cannot_be_created(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    config = tmp_path / "agent.toml"
    config.write_text("")
    code = run(["run", "--once", "--config", str(config), "--state-dir", str(blocker / "state")])
    err = capsys.readouterr().err
    assert code == 1 and "cannot create state directory" in err and "Traceback" not in err


def test_environment_controls_every_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "agent.toml"
    config.write_text('host_nickname = "from-file"\n')
    monkeypatch.setenv("CBR_AGENT_CONFIG", str(config))
    monkeypatch.setenv("CBR_AGENT_STATE_DIR", str(tmp_path / "envstate"))
    assert run(["register"]) == 0
    assert (tmp_path / "envstate" / "identity.json").exists()
    assert os.path.exists(tmp_path / "envstate" / "controlplane.db")
    capsys.readouterr()


def test_status_says_when_its_config_file_is_not_present(host: Host, capsys) -> None:
    from cbr_agent.config import default_config_file

    code, out, _ = host("status")
    assert code == 0 and f"config file:     {host.config}\n" in out
    default = default_config_file()  # used when none is chosen; it need not exist
    if default.exists():
        pytest.skip(f"{default} exists on this machine")
    assert run(["status", "--state-dir", str(host.state)]) == 0
    assert f"config file:     {default} (not present" in capsys.readouterr().out
    assert run(["status", "--json", "--state-dir", str(host.state)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["config_file"] == str(default) and report["config_file_present"] is False
