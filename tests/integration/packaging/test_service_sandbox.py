"""The daemon under the shipped unit's file-system restrictions, on a fresh host (issue 9, item 1).

A private mount namespace (``unshare -m``) rebuilds what ``service/cbr-agent.service`` asks of the file
system (see ``unitsandbox.py``): everything read-only but the unit's ``ReadWritePaths`` and its state and
cache dirs, a private ``/tmp``. ``/etc``, ``/var/lib`` and ``/var/cache`` get overlays whose writes land in
a scratch dir, so ``/etc/cbr-agent/agent.toml`` and ``/var/lib/cbr-agent`` are the real default paths
the service uses, and this host is never touched. The daemon is the source tree's ``cbr-agent run``
(the unit's ExecStart with the unit's arguments), as root, with no ``--config`` or ``--state-dir``.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.packaging.conftest import REPO, Built, DpkgRoot
from tests.integration.packaging.unitsandbox import parse_unit

UNIT = REPO / "service" / "cbr-agent.service"
SANDBOX = Path(__file__).with_name("unitsandbox.py")

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                                reason="needs root and unshare(1) for a mount namespace")


class Host:
    """A fresh host seen through the unit: layers for /etc, /var/lib, /var/cache in ``tmp``, the source
    tree standing in for /opt/cbr-agent/venv. With ``packaged``, a root the .deb was installed into
    with dpkg: its /etc, /var/lib, /var/cache and /opt are the layers, and the daemon is the unit's
    ExecStart as it is, the package's venv."""

    def __init__(self, tmp: Path, packaged: Path | None = None) -> None:
        self.packaged = packaged
        if packaged is not None:
            self.layers = {d: packaged / d.lstrip("/") for d in ("/etc", "/var/lib", "/var/cache", "/opt")}
        else:
            self.layers = {d: tmp / "layers" / d.strip("/").replace("/", "-") for d in
                           ("/etc", "/var/lib", "/var/cache")}
        self.etc = self.layers["/etc"] / "cbr-agent"
        self.state = self.layers["/var/lib"] / "cbr-agent"
        if packaged is None:
            # what the package's postinstall leaves: root-only dirs, no agent identity, no repository
            for path in (self.etc, self.state, self.layers["/var/cache"] / "cbr-agent"):
                path.mkdir(parents=True, mode=0o700)

    def agent(self) -> list[str]:
        """The cbr-agent command inside the sandbox."""
        if self.packaged is not None:
            (exec_start,) = parse_unit(UNIT.read_text(encoding="utf-8"))["Service"]["ExecStart"]
            return shlex.split(exec_start)[:1]
        return [sys.executable, "-m", "cbr_agent"]

    def data_dir(self) -> tuple[Path, str]:
        """A directory to back up, as (where the test writes it, the path the daemon sees): not
        below /tmp, which the unit's PrivateTmp hides from the service (and pytest's tmp_path may be
        there)."""
        return self.layers["/var/lib"] / "cbr-test-data", "/var/lib/cbr-test-data"

    def env(self) -> dict[str, str]:
        clean = {k: v for k, v in os.environ.items()
                 if not k.startswith(("CBR_AGENT_", "NOTIFY_")) and k != "PYTHONPATH"}
        clean["CBR_AGENT_INSECURE_TEST_KDF"] = "1"  # keeps key files fast
        if self.packaged is None:
            clean["PYTHONPATH"] = str(REPO)
        return clean

    def command(self, *argv: str, layers_only: bool = False) -> list[str]:
        layer_args = [f"--layer={d}={u}" for d, u in self.layers.items()]
        # the source tree and the dpkg root stay visible even when they lie below /tmp (PrivateTmp)
        keep = [f"--keep={REPO}", *([f"--keep={self.packaged}"] if self.packaged is not None else [])]
        return ["unshare", "-m", "--propagation", "private", sys.executable, str(SANDBOX),
                "--unit", str(UNIT), *layer_args, *keep, *(["--layers-only"] if layers_only else []),
                "--", *argv]

    def run(self, *argv: str, layers_only: bool = False) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.command(*argv, layers_only=layers_only), capture_output=True,
                              text=True, env=self.env(), timeout=120)


def exec_start_args() -> list[str]:
    """The arguments of the unit's ExecStart (``run``): the daemon is started as the unit starts it."""
    (exec_start,) = parse_unit(UNIT.read_text(encoding="utf-8"))["Service"]["ExecStart"]
    return shlex.split(exec_start)[1:]


def test_the_sandbox_is_read_only_except_the_units_writable_paths(tmp_path: Path) -> None:
    """The check below can fail: /etc (and the rest) is read-only in there, the state dir is not."""
    host = Host(tmp_path)
    proc = host.run("sh", "-c", "touch /etc/cbr-agent/x; touch /usr/x; touch /var/lib/x; "
                    "touch /var/lib/cbr-agent/ok /var/cache/cbr-agent/ok /tmp/ok && echo wrote")
    assert proc.stderr.count("Read-only file system") == 3, proc.stderr
    assert proc.stdout.strip() == "wrote"
    assert (host.state / "ok").exists() and not (host.etc / "x").exists()


def first_scheduled_backup(host: Host, tmp_path: Path) -> None:
    """Configure a schedule and a path as an operator would, start the daemon as the unit does, wait for
    its first scheduled backup, stop it, and check what it left."""
    data, seen_as = host.data_dir()
    (data / "sub").mkdir(parents=True)
    (data / "a.txt").write_text("alpha\n")
    (data / "sub" / "b.bin").write_bytes(os.urandom(100_000))
    # the configuration an operator (or install.sh) leaves: a schedule, nothing about the repository
    config = host.etc / "agent.toml"
    config.write_text('backup_schedule = "10s"\nlog_format = "json"\n')
    config.chmod(0o600)
    etc_before = sorted(p.name for p in host.etc.iterdir())
    # the operator's one step, as root outside the service: a backup path (embedded control plane)
    proc = host.run(*host.agent(), "path", "add", seen_as, layers_only=True)
    assert proc.returncode == 0, proc.stderr

    daemon = subprocess.Popen(host.command(*host.agent(), *exec_start_args()),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=host.env())
    state_file = host.state / "agent-state.json"
    outcome = None
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and daemon.poll() is None:
            try:
                outcome = json.loads(state_file.read_text()).get("last_backup")
            except (OSError, ValueError):
                outcome = None
            if outcome:
                break
            time.sleep(0.2)
    finally:
        daemon.send_signal(signal.SIGTERM)
        _out, log = daemon.communicate(timeout=30)
    assert outcome is not None, f"no backup outcome; daemon exit {daemon.returncode}:\n{log}"
    assert outcome["status"] == "ok", f"{outcome}\n{log}"
    assert daemon.returncode in (0, 130), log  # a clean stop (the unit counts 130 as success too)

    # the repository and its generated password are in the state dir; /etc got nothing new
    password = host.state / "repository.password"
    assert (password.stat().st_mode & 0o777) == 0o600
    assert sorted(p.name for p in host.etc.iterdir()) == etc_before
    snapshots = list((host.state / "repository" / "snapshots").iterdir())
    assert [s.name for s in snapshots] == [outcome["snapshot_id"]]
    # said loudly in the log, with where the password is kept (and never the password itself)
    assert "GENERATED A REPOSITORY PASSWORD in /var/lib/cbr-agent/repository.password" in log, log
    assert "created the repository" in log
    assert password.read_text().strip() not in log

    # the snapshot restores with that password (outside the sandbox, on the layers' files)
    env = {**host.env(), "PYTHONPATH": str(REPO), "CBR_AGENT_PASSWORD_FILE": str(password),
           "CBR_AGENT_REPOSITORY": str(host.state / "repository")}
    target = tmp_path / "restored"
    proc = subprocess.run([sys.executable, "-m", "cbr_agent", "restore", "latest", "--target", str(target),
                           "--state-dir", str(tmp_path / "cli-state"), "--config", str(config)],
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert (target / seen_as.lstrip("/") / "a.txt").read_text() == "alpha\n"


def test_the_first_scheduled_backup_works_on_a_fresh_host_with_no_manual_step(tmp_path: Path) -> None:
    first_scheduled_backup(Host(tmp_path), tmp_path)


@pytest.mark.slow
def test_the_packaged_service_backs_up_on_a_fresh_host(built_packages: Built, dpkg_root: DpkgRoot,
                                                       tmp_path: Path) -> None:
    """The same with the .deb installed (dpkg --root): the unit's ExecStart, the package's venv, the
    dirs and files its postinstall made."""
    dpkg_root.install(built_packages.deb)
    host = Host(tmp_path, packaged=dpkg_root.path)
    assert host.agent() == ["/opt/cbr-agent/venv/bin/cbr-agent"]
    # the unit forbids writing bytecode (PYTHONDONTWRITEBYTECODE, a read-only /opt): without what pip
    # compiled at install, every start and every backup helper process would compile from source again
    package = next((dpkg_root / "opt/cbr-agent/venv").glob("lib/python3*/site-packages/cbr_agent"))
    modules = list(package.rglob("*.py"))
    assert modules and len(list(package.rglob("__pycache__/*.pyc"))) >= len(modules)
    first_scheduled_backup(host, tmp_path)


def test_an_upgraded_host_keeps_the_password_file_next_to_the_config(tmp_path: Path) -> None:
    """A host that already has /etc/cbr-agent/repository.password (made by an earlier version, by hand
    before the service ran) backs up with it: nothing new is generated."""
    host = Host(tmp_path)
    data, seen_as = host.data_dir()
    data.mkdir(parents=True)
    (data / "f").write_text("x")
    (host.etc / "agent.toml").write_text('backup_schedule = "10s"\n')
    old = host.etc / "repository.password"
    old.write_text("the password from before\n")
    old.chmod(0o600)
    proc = host.run(sys.executable, "-m", "cbr_agent", "path", "add", seen_as, layers_only=True)
    assert proc.returncode == 0, proc.stderr
    proc = host.run(sys.executable, "-m", "cbr_agent", "run", "--once")
    assert proc.returncode == 0, proc.stderr
    assert not (host.state / "repository.password").exists()
    assert "password file /etc/cbr-agent/repository.password" in proc.stderr
    from cbr_agent.repository import Repository

    repo = Repository.open(str(host.state / "repository"), "the password from before")
    assert len(repo.list_snapshots()) == 1
