"""Golden images: every clone of an image that carries the agent registers as its own agent.

The "image" is a root with the .deb installed; a "clone" is a copy of its config and state dirs used
under another machine id. Each CLI run sees its own /etc/machine-id through a private mount namespace
(``unshare -m`` and a bind mount), so the host's machine id is never touched.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.integration.packaging.conftest import Built, DpkgRoot

pytestmark = pytest.mark.slow


def can_fake_machine_id() -> bool:
    if shutil.which("unshare") is None or not Path("/etc/machine-id").exists():
        return False
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount --bind /dev/null /etc/machine-id"],
                           capture_output=True)
    return probe.returncode == 0


needs_namespaces = pytest.mark.skipif(not can_fake_machine_id(),
                                      reason="needs root and 'unshare -m' to give a run its own machine id")


class Host:
    """One machine: its machine id, config dir and state dir, and the image's installed CLI."""

    def __init__(self, image: DpkgRoot, base: Path, machine_id: str) -> None:
        self.image = image
        self.base = base
        self.machine_id_file = base / "machine-id"
        base.mkdir(parents=True, exist_ok=True)
        self.machine_id_file.write_text(machine_id + "\n")

    @property
    def state_dir(self) -> Path:
        return self.base / "state"

    @property
    def config(self) -> Path:
        return self.base / "etc" / "agent.toml"

    def clone_from(self, other: Host) -> Host:
        shutil.copytree(other.state_dir, self.state_dir, symlinks=True)
        shutil.copytree(other.config.parent, self.config.parent, symlinks=True)
        return self

    def cli(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        script = 'mount --bind "$1" /etc/machine-id && shift && exec "$@"'
        cmd = ["unshare", "-m", "sh", "-c", script, "sh", str(self.machine_id_file),
               str(self.image / "usr/bin/cbr-agent"), *args, "--state-dir", str(self.state_dir),
               "--config", str(self.config)]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env)

    def register(self, server) -> str:
        self.config.parent.mkdir(parents=True, exist_ok=True)
        proc = self.cli("register", "--json", "--endpoint", server.url, "--project-id", server.project_id,
                        "--ak", server.ak, env={"CBR_AGENT_SK": server.sk, "PATH": "/usr/bin:/bin"})
        assert proc.returncode == 0, proc.stderr
        self.last_log = proc.stderr
        return str(json.loads(proc.stdout)["agent_id"])


@needs_namespaces
def test_clones_of_an_image_get_their_own_agent_ids(built_packages: Built, dpkg_root: DpkgRoot,
                                                    cp_server, tmp_path: Path) -> None:
    dpkg_root.install(built_packages.deb)
    image_state = dpkg_root.state_dir
    assert not (image_state / "identity.json").exists()

    # clones of an image where the agent was installed but never started
    fresh = []
    for n in (1, 2):
        host = Host(dpkg_root, tmp_path / f"fresh-{n}", f"{n:032x}")
        host.state_dir.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(image_state, host.state_dir)
        fresh.append(host.register(cp_server))
    assert fresh[0] != fresh[1]

    # an image where the agent did run once (its identity is baked in), then cloned twice
    image = Host(dpkg_root, tmp_path / "image", "a" * 32)
    baked = image.register(cp_server)
    clones = [Host(dpkg_root, tmp_path / f"clone-{n}", f"{n:x}" * 32).clone_from(image) for n in (1, 2)]
    cloned_ids = [clone.register(cp_server) for clone in clones]
    assert len({baked, *cloned_ids}) == 3, "each clone made its own agent id"
    for clone in clones:
        assert "machine id changed" in clone.last_log
    # the machine the image was made on keeps its id, and a clone keeps its new one
    assert image.register(cp_server) == baked
    assert clones[0].register(cp_server) == cloned_ids[0]

    listed = {a.agent_id for a in cp_server.client().list_agents().agents}
    assert listed == {*fresh, baked, *cloned_ids}
