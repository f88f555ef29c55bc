"""The .rpm installed and erased for real with rpm, scriptlets included (issue 9, item 5).

Debian's ``rpm`` installs into a scratch ``--root`` (``--nodeps``: python3 is this host's, not in that
root's rpm database). rpm runs the scriptlets chrooted into that root, so the root gets this host's
``/usr`` through an overlay whose writes land in a scratch dir (the package's files in ``/usr`` too),
inside a private mount namespace (``unshare -m``): the scriptlets build the venv with the host's
Python, ``systemctl preset`` works offline on the root, and this host is never touched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.integration.packaging.conftest import Built, _need

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root (mount namespace, chroot)")]

DB = "/var/lib/rpm"
#: directories that belong to the distribution (filesystem, systemd packages), never to cbr-agent
SYSTEM_DIRS = {"/", "/etc", "/opt", "/usr", "/usr/bin", "/usr/lib", "/usr/lib/systemd",
               "/usr/lib/systemd/system", "/usr/lib/tmpfiles.d", "/usr/share", "/usr/share/doc", "/var",
               "/var/lib", "/var/cache",
               # shell completions and the man page go into directories that the distribution's
               # filesystem, bash-completion and zsh packages own
               "/usr/share/man/man1", "/usr/share/bash-completion/completions",
               "/usr/share/zsh/site-functions"}
WANTS = "etc/systemd/system/multi-user.target.wants/cbr-agent.service"


class RpmRoot:
    def __init__(self, scratch: Path) -> None:
        self.scratch = scratch
        self.path = scratch / "root"
        self.usr_upper = scratch / "usr-upper"
        for sub in ("usr", "etc", "var/lib/rpm", "tmp", "dev", "proc", "run"):
            (self.path / sub).mkdir(parents=True, exist_ok=True)
        (self.path / "tmp").chmod(0o1777)
        for link in ("bin", "lib", "lib64", "sbin"):
            (self.path / link).symlink_to(f"usr/{link}")
        for name in ("passwd", "group"):  # chown root:root in the scriptlets resolves names
            shutil.copy(f"/etc/{name}", self.path / "etc" / name)
        (scratch / "usr-work").mkdir()
        self.usr_upper.mkdir()

    def in_namespace(self, *rpm_args: str) -> subprocess.CompletedProcess[str]:
        """``rpm --root ROOT ARGS`` with the root's /usr, /dev and /proc in place."""
        script = (f'set -e; r="{self.path}"; '
                  f'mount -t overlay overlay -o lowerdir=/usr,upperdir="{self.usr_upper}",'
                  f'workdir="{self.scratch / "usr-work"}" "$r/usr"; '
                  'mount --rbind /dev "$r/dev"; mount -t proc proc "$r/proc"; '
                  f'exec rpm --root "$r" --dbpath {DB} "$@"')
        return subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script, "rpm",
                               *rpm_args], capture_output=True, text=True, timeout=300)

    def query(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["rpm", "--root", str(self.path), "--dbpath", DB, *args], capture_output=True,
                              text=True, timeout=60)


def test_rpm_installs_owns_its_dirs_runs_its_scriptlets_and_erases(built_packages: Built,
                                                                   tmp_path: Path) -> None:
    _need("rpm")
    _need("unshare")
    root = RpmRoot(tmp_path)
    assert root.query("--initdb").returncode == 0
    proc = root.in_namespace("-i", "--nodeps", str(built_packages.rpm))
    assert proc.returncode == 0, proc.stderr
    assert "virtual environment /opt/cbr-agent/venv -> venvs/" in proc.stderr, "the %post built the venv"
    assert root.query("-q", "cbr-agent").stdout.strip() == f"cbr-agent-{built_packages.version}-1.x86_64"

    # every file and directory of the package is root's, and every directory it creates is its own
    listing = root.query("-qlv", "cbr-agent").stdout.splitlines()
    owned = set()
    for line in listing:
        fields = line.split()
        assert fields[2:4] == ["root", "root"], line
        owned.add(fields[8])
    parents = {str(Path(p).parent) for p in owned}
    assert parents - owned <= SYSTEM_DIRS, sorted(parents - owned - SYSTEM_DIRS)
    created = [d for top in ("opt/cbr-agent", "etc/cbr-agent", "var/lib/cbr-agent", "var/cache/cbr-agent")
               for d in [root.path / top, *(root.path / top).rglob("*")]
               if d.is_dir() and not d.is_symlink() and "venvs/" not in str(d.relative_to(root.path))]
    for directory in created:
        path = "/" + str(directory.relative_to(root.path))
        assert path in owned, f"{path} is created but not owned by the package"
    for path in ("/opt/cbr-agent", "/opt/cbr-agent/venvs", "/usr/share/doc/cbr-agent"):
        assert root.query("-qf", path).stdout.strip().startswith("cbr-agent-"), path

    # the scriptlets' work: root-only dirs, a venv of this host's Python that runs, the unit preset
    for d in ("etc/cbr-agent", "var/lib/cbr-agent", "var/cache/cbr-agent"):
        assert (root.path / d).stat().st_mode & 0o777 == 0o700, d
    venv = root.path / "opt/cbr-agent/venv"
    assert venv.is_symlink() and (venv / "bin/cbr-agent").exists()
    # bin/cbr-agent's #! names the venv's path inside the root; its python finds the venv from here too
    run = subprocess.run([str(venv / "bin/python"), "-m", "cbr_agent", "--version"], capture_output=True,
                         text=True, env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert run.stdout.strip() == f"cbr-agent {built_packages.version}", run.stderr
    if shutil.which("systemctl"):
        assert (root.path / WANTS).is_symlink(), "%post ran 'systemctl preset' (the presets enable it)"
    assert (root.usr_upper / "bin/cbr-agent").exists() and \
        (root.usr_upper / "lib/systemd/system/cbr-agent.service").exists()

    proc = root.in_namespace("-e", "cbr-agent")
    assert proc.returncode == 0, proc.stderr
    assert root.query("-q", "cbr-agent").returncode != 0
    assert not (root.path / "opt/cbr-agent").exists(), "the venv and every package dir are gone"
    assert not (root.path / WANTS).exists(), "%preun disabled the unit"
    assert (root.path / "var/lib/cbr-agent").is_dir(), "rpm has no purge: the state stays"
