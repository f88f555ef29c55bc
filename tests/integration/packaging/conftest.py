"""Fixtures for the packaging tests: packages built once per session, throwaway dpkg roots.

``built_packages``
    ``packaging/build.sh`` run once per session into a temporary dist dir, with wheels for the
    Pythons on this machine only (``/usr/bin/python3`` and other CPython 3.10+ found), to keep it
    fast. Needs a package index at build time, like ``pip install '.[test]'`` does.
``DpkgRoot`` / ``dpkg_root``
    An empty root that dpkg installs into with ``--root DIR --force-script-chrootless``: the maintainer
    scripts run on this host with ``DPKG_ROOT=DIR``, build the venv with the host's system Python, and
    never touch the running system (no systemctl, nothing outside DIR).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
SYSTEM_PYTHON = Path("/usr/bin/python3")


def _need(tool: str) -> None:
    if shutil.which(tool) is None:
        pytest.fail(f"{tool} is needed by the packaging tests (see the README's test command)")


def python_version(python: Path) -> str | None:
    proc = subprocess.run([str(python), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                          capture_output=True, text=True)
    return proc.stdout.strip() if proc.returncode == 0 else None


def system_python_version() -> str:
    version = python_version(SYSTEM_PYTHON)
    assert version, f"{SYSTEM_PYTHON} does not run"
    return version


def other_interpreters() -> dict[str, Path]:
    """CPython 3.10+ interpreters on this machine besides the system one (the distribution's own
    /usr/bin/python3.X, and pyenv's next to the Python running the tests), by version."""
    candidates = [Path(f"/usr/bin/python3.{minor}") for minor in range(10, 20)]
    versions_dir = Path(sys.executable).resolve().parent.parent.parent
    if versions_dir.name == "versions":
        candidates += sorted(versions_dir.glob("3.1*/bin/python3.1*"))
    system = system_python_version()
    found: dict[str, Path] = {}
    for candidate in candidates:
        if not re.fullmatch(r"python3\.1\d", candidate.name) or not os.access(candidate, os.X_OK):
            continue
        version = python_version(candidate)
        if version and version != system and version == candidate.name.removeprefix("python"):
            found.setdefault(version, candidate)
    return found


@dataclass(frozen=True)
class Built:
    dist: Path
    version: str
    deb: Path
    rpm: Path
    wheel: Path
    sdist: Path
    python_versions: str
    seconds: float


def package_version() -> str:
    text = (REPO / "cbr_agent" / "__init__.py").read_text(encoding="utf-8")
    match = re.search(r'^__version__ = "(.+)"$', text, re.M)
    assert match
    return match.group(1)


@pytest.fixture(scope="session")
def built_packages(tmp_path_factory: pytest.TempPathFactory) -> Built:
    for tool in ("nfpm", "dpkg", "dpkg-deb"):
        _need(tool)
    if not SYSTEM_PYTHON.exists():
        pytest.fail("/usr/bin/python3 is needed: the packages build their venv with the system Python")
    dist = tmp_path_factory.mktemp("dist")
    # wheels for the system Python and for every other one here, which the venv tests then use
    pyver = " ".join(sorted({system_python_version(), *other_interpreters()},
                            key=lambda v: tuple(map(int, v.split(".")))))
    started = time.monotonic()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
    proc = subprocess.run(["sh", str(REPO / "packaging" / "build.sh"), "--out", str(dist),
                           "--python-versions", pyver],
                          capture_output=True, text=True, env=env, timeout=600)
    seconds = time.monotonic() - started
    assert proc.returncode == 0, f"build.sh failed ({proc.returncode}):\n{proc.stderr}"
    version = package_version()
    return Built(dist=dist, version=version, deb=dist / f"cbr-agent_{version}-1_amd64.deb",
                 rpm=dist / f"cbr-agent-{version}-1.x86_64.rpm",
                 wheel=dist / f"cbr_agent-{version}-py3-none-any.whl",
                 sdist=dist / f"cbr_agent-{version}.tar.gz", python_versions=pyver, seconds=seconds)


class DpkgRoot:
    """A directory dpkg installs packages into, with the scripts run chrootless (DPKG_ROOT)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        for sub in ("var/lib/dpkg/info", "var/lib/dpkg/updates"):
            (path / sub).mkdir(parents=True, exist_ok=True)
        for name in ("status", "available"):
            (path / "var/lib/dpkg" / name).touch()

    def dpkg(self, *args: str, env: Mapping[str, str] | None = None,
             timeout: float = 180) -> subprocess.CompletedProcess[str]:
        # --force-depends: python3 is on the host, not in this root's package database
        return subprocess.run(["dpkg", f"--root={self.path}", "--force-script-chrootless",
                               "--force-depends", *args],
                              capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, **(env or {})})

    def install(self, deb: Path) -> subprocess.CompletedProcess[str]:
        proc = self.dpkg("-i", str(deb))
        assert proc.returncode == 0, f"dpkg -i failed:\n{proc.stdout}\n{proc.stderr}"
        return proc

    def status(self) -> str:
        proc = subprocess.run(["dpkg-query", f"--admindir={self.path}/var/lib/dpkg", "-W",
                               "-f=${db:Status-Status} ${Version}", "cbr-agent"],
                              capture_output=True, text=True)
        return proc.stdout.strip() if proc.returncode == 0 else ""

    def __truediv__(self, other: str) -> Path:
        return self.path / other.lstrip("/")

    @property
    def config(self) -> Path:
        return self / "etc/cbr-agent/agent.toml"

    @property
    def state_dir(self) -> Path:
        return self / "var/lib/cbr-agent"

    def cli(self, *args: str, env: Mapping[str, str] | None = None, config: bool = True,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """The installed ``/usr/bin/cbr-agent`` of this root, on this root's config and state."""
        extra: list[str] = ["--state-dir", str(self.state_dir)]
        if config and self.config.exists():
            extra += ["--config", str(self.config)]
        clean = {k: v for k, v in os.environ.items() if not k.startswith("CBR_AGENT_")}
        return subprocess.run([str(self / "usr/bin/cbr-agent"), *args, *extra], capture_output=True,
                              text=True, timeout=timeout, env={**clean, **(env or {})})


@pytest.fixture
def dpkg_root(tmp_path: Path) -> DpkgRoot:
    return DpkgRoot(tmp_path / "root")


@pytest.fixture(scope="module")
def installed_root(built_packages: Built, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DpkgRoot]:
    """One root with the .deb installed, shared by the read-only checks of a module."""
    root = DpkgRoot(tmp_path_factory.mktemp("installed") / "root")
    root.install(built_packages.deb)
    yield root


def run_script(args: Sequence[str], *, env: Mapping[str, str], timeout: float = 300,
               trace: Path | None = None) -> subprocess.CompletedProcess[str]:
    """packaging/install.sh with ``env`` on top of a clean environment; with ``trace``, under
    ``strace`` recording the argv of every program it runs into that file."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CBR_AGENT_")}
    command = ["sh", str(REPO / "packaging" / "install.sh"), *args]
    if trace is not None:
        command = ["strace", "-f", "-qq", "-e", "trace=execve", "-s", "4096", "-o", str(trace), *command]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env={**clean, **env})
