"""packaging/install.sh against a real control plane on loopback, installing into a throwaway root."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import pytest

from tests.integration.packaging.conftest import Built, DpkgRoot, run_script

pytestmark = pytest.mark.slow


def settings_env(server, **extra: str) -> dict[str, str]:
    return {"CBR_AGENT_ENDPOINT": server.url, "CBR_AGENT_PROJECT_ID": server.project_id,
            "CBR_AGENT_AK": server.ak, "CBR_AGENT_SK": server.sk, **extra}


def snapshot(root: DpkgRoot) -> dict[str, tuple[bytes, int, int]]:
    """Content, mode and mtime of every file under the root's /etc/cbr-agent."""
    out = {}
    for path in sorted((root / "etc/cbr-agent").iterdir()):
        st = path.stat()
        out[path.name] = (path.read_bytes(), stat.S_IMODE(st.st_mode), st.st_mtime_ns)
    return out


def test_install_twice_registers_once_and_changes_nothing_the_second_time(
        built_packages: Built, dpkg_root: DpkgRoot, cp_server, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    args = ["--root", str(dpkg_root.path), "--package", str(built_packages.deb),
            "--path", str(data), "--exclude", "*.tmp"]
    trace = tmp_path / "execve.trace" if shutil.which("strace") else None
    first = run_script(args, env=settings_env(cp_server), trace=trace)
    assert first.returncode == 0, first.stderr + first.stdout
    if trace is not None:  # the argv of every program install.sh ran, as `ps` would have shown it
        execs = [line for line in trace.read_text().splitlines() if "execve(" in line]
        assert any("register" in line for line in execs), "the trace saw the CLI run"
        # (strace shows environments only as "/* N vars */")
        assert not [line for line in execs if cp_server.sk in line], "the secret key was on a command line"
    lines = first.stdout.splitlines()
    assert lines[-1] == "cbr-agent-install: result: changed"
    assert any(line.startswith("cbr-agent-install: package: installed cbr-agent") for line in lines)
    assert any(line.startswith("cbr-agent-install: config: written") for line in lines)
    assert any(line.startswith("cbr-agent-install: paths: updated") for line in lines)
    assert cp_server.sk not in first.stdout + first.stderr

    files = snapshot(dpkg_root)
    config_text = files["agent.toml"][0].decode()
    assert cp_server.url in config_text and cp_server.project_id in config_text
    assert cp_server.sk not in config_text, "the secret key goes to the credentials file only"
    creds_content, creds_mode, _ = files["credentials.toml"]
    assert cp_server.sk.encode() in creds_content and creds_mode == 0o600

    second = run_script(args, env=settings_env(cp_server))
    assert second.returncode == 0, second.stderr + second.stdout
    assert second.stdout.splitlines()[-1] == "cbr-agent-install: result: unchanged", second.stdout
    assert "package: cbr-agent" in second.stdout and "already installed" in second.stdout
    assert snapshot(dpkg_root) == files, "the config is byte for byte the same, not even rewritten"

    # a host whose package came from a repository: no package file, the installed one is used
    third = run_script([a for a in args if a not in ("--package", str(built_packages.deb))],
                       env=settings_env(cp_server))
    assert third.returncode == 0, third.stderr + third.stdout
    assert "already installed (no package file given)" in third.stdout
    assert third.stdout.splitlines()[-1] == "cbr-agent-install: result: unchanged", third.stdout

    agents = cp_server.client().list_agents().agents
    assert len(agents) == 1, [a.agent_id for a in agents]
    identity = json.loads((dpkg_root.state_dir / "identity.json").read_text())
    assert agents[0].agent_id == identity["agent_id"]
    shown = cp_server.client().show_agent(identity["agent_id"])
    assert [(p.dir_path, p.excludes) for p in shown.paths] == [(str(data), ("*.tmp",))]


def test_settings_file_operator_mistakes_and_their_exit_codes(
        built_packages: Built, dpkg_root: DpkgRoot, cp_server, tmp_path: Path) -> None:
    """What a fleet tool sees: each mistake its own code and one line; fixing it and rerunning works."""
    base = ["--root", str(dpkg_root.path), "--package", str(built_packages.deb)]
    settings = tmp_path / "cbr-agent.env"
    settings.write_text(f"# fleet settings\nCBR_AGENT_ENDPOINT={cp_server.url}\n"
                        f"CBR_AGENT_PROJECT_ID=\"{cp_server.project_id}\"\nCBR_AGENT_AK={cp_server.ak}\n"
                        "CBR_AGENT_SK=wrong-secret\nCBR_AGENT_INSTALL_PATHS=/srv/a,/srv/b\n")
    os.chmod(settings, 0o600)

    wrong = run_script([*base, "--settings", str(settings)], env={})
    assert wrong.returncode == 5, wrong.stderr + wrong.stdout
    assert "wrong-secret" not in wrong.stderr + wrong.stdout
    assert "cbr-agent-install: error:" in wrong.stderr

    unreachable = run_script([*base, "--settings", str(settings)],
                             env={"CBR_AGENT_ENDPOINT": "http://127.0.0.1:9", "CBR_AGENT_SK": cp_server.sk})
    assert unreachable.returncode == 4, unreachable.stderr + unreachable.stdout

    fixed = run_script([*base, "--settings", str(settings)], env={"CBR_AGENT_SK": cp_server.sk})
    assert fixed.returncode == 0, fixed.stderr + fixed.stdout
    agent = cp_server.client().list_agents().agents
    assert len(agent) == 1
    assert sorted(p.dir_path for p in cp_server.client().show_agent(agent[0].agent_id).paths) == \
        ["/srv/a", "/srv/b"]


@pytest.mark.parametrize("args, env, code, message", [
    ([], {}, 2, "CBR_AGENT_ENDPOINT is not set"),
    ([], {"CBR_AGENT_ENDPOINT": "http://x", "CBR_AGENT_PROJECT_ID": "p"}, 2, "no credentials"),
    ([], {"CBR_AGENT_ENDPOINT": "http://x", "CBR_AGENT_PROJECT_ID": "p", "CBR_AGENT_AK": "a"}, 2,
     "must be set together"),
    ([], {"CBR_AGENT_ENDPOINT": "ftp://x", "CBR_AGENT_PROJECT_ID": "p", "CBR_AGENT_TOKEN": "t"}, 2,
     "http:// or https://"),
    (["--sk", "s3cret"], {}, 2, "--sk is not accepted"),
    (["--frobnicate"], {}, 2, "unknown argument"),
    (["--package", "/nonexistent.deb"],
     {"CBR_AGENT_ENDPOINT": "http://x", "CBR_AGENT_PROJECT_ID": "p", "CBR_AGENT_TOKEN": "t"}, 6,
     "does not exist"),
])
def test_bad_input_gets_one_line_and_its_exit_code(args, env, code, message, tmp_path: Path) -> None:
    root = tmp_path / "root"
    proc = run_script(["--root", str(root), *args], env=env, timeout=60)
    assert proc.returncode == code, proc.stderr
    assert message in proc.stderr
    assert "s3cret" not in proc.stderr + proc.stdout
    assert not (root / "usr").exists(), "nothing was installed"
