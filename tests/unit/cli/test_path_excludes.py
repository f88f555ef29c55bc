"""`path exclude add|remove`: change some excludes of a backup path without giving the whole list
(issue 9, item 13), on the embedded control plane, in-process. The HTTP side runs against the real
server in tests/integration/agent/test_path_uninstall_exit_codes.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cbr_agent.cli.main import run
from cbr_agent.controlplane.embedded import EmbeddedControlPlane


class Host:
    def __init__(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.config = tmp_path / "agent.toml"
        self.config.write_text("")
        self.state = tmp_path / "state"
        self.capsys = capsys

    def __call__(self, *args: str) -> tuple[int, str, str]:
        code = run([*args, "--config", str(self.config), "--state-dir", str(self.state)])
        out, err = self.capsys.readouterr()
        return code, out, err

    def excludes(self, path: str) -> list[str]:
        agent_id = json.loads((self.state / "identity.json").read_text())["agent_id"]
        agent = EmbeddedControlPlane(self.state / "controlplane.db", "local").show_agent(agent_id)
        return next(list(p.excludes) for p in agent.paths if p.dir_path == path)


@pytest.fixture
def host(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Host:
    return Host(tmp_path, capsys)


def test_add_and_remove_single_excludes(host: Host) -> None:
    assert host("path", "add", "/srv", "--exclude", "*.tmp")[0] == 0
    code, out, _ = host("path", "exclude", "add", "/srv", "node_modules", "*.tmp", "/srv/cache")
    assert code == 0
    assert "added: node_modules" in out and "already there: *.tmp" in out
    assert host.excludes("/srv") == ["*.tmp", "node_modules", "/srv/cache"]
    code, out, _ = host("path", "exclude", "remove", "/srv", "*.tmp", "*.bak")
    assert code == 0 and "removed: *.tmp" in out and "not there: *.bak" in out
    assert host.excludes("/srv") == ["node_modules", "/srv/cache"]
    # the last one can go too: the list becomes empty, the path stays
    host("path", "exclude", "remove", "/srv", "node_modules", "/srv/cache")
    assert host.excludes("/srv") == []
    code, out, _ = host("path", "list")
    assert out.strip() == "/srv"


def test_json_output(host: Host) -> None:
    host("path", "add", "/srv")
    code, out, _ = host("path", "exclude", "add", "/srv", "*.log", "--json")
    assert code == 0
    assert json.loads(out) == {"path": "/srv", "added": ["*.log"], "existed": [], "excludes": ["*.log"]}
    code, out, _ = host("path", "exclude", "remove", "/srv", "*.log", "x", "--json")
    assert json.loads(out) == {"path": "/srv", "removed": ["*.log"], "not_existed": ["x"],
                               "excludes": []}


def test_the_local_cache_follows(host: Host) -> None:
    host("path", "add", "/srv")
    host("path", "exclude", "add", "/srv", "*.log")
    cached = json.loads((host.state / "paths.json").read_text())
    assert "*.log" in json.dumps(cached)


@pytest.mark.parametrize(("args", "message"), [
    (("path", "exclude", "add", "/nope", "*.tmp"), "not a backup path"),
    (("path", "exclude", "add", "/srv", "a,b"), "comma"),
    (("path", "exclude", "add", "/srv", "/elsewhere"), "not inside"),
    (("path", "exclude", "add", "/srv"), "required"),
    (("path", "exclude", "frob", "/srv", "x"), "invalid choice"),
])
def test_bad_input_is_one_line_and_exit_2(host: Host, args: tuple[str, ...], message: str) -> None:
    host("path", "add", "/srv")
    code, _, err = host(*args)
    assert code == 2 and message in err, err
    assert len(err.strip().splitlines()) == 1
    assert host.excludes("/srv") == []


def test_never_registered_host(host: Host) -> None:
    code, _, err = host("path", "exclude", "add", "/srv", "*.tmp")
    assert code == 2 and "not a backup path" in err
    assert not (host.state / "identity.json").exists()
