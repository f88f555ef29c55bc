"""What packaging/build.sh builds: the .deb, the .rpm, the wheel and the sdist, and what they hold."""

from __future__ import annotations

import os
import stat
import subprocess
import tarfile
import zipfile
from pathlib import Path

import pytest

from tests.integration.packaging.conftest import REPO, SYSTEM_PYTHON, Built, DpkgRoot, other_interpreters
from tests.integration.packaging.rpmheader import (
    RPMFILE_CONFIG,
    RPMFILE_NOREPLACE,
    TAG_POSTIN,
    TAG_POSTUN,
    TAG_PREUN,
    read_rpm,
)

pytestmark = pytest.mark.slow

#: path -> mode every package must carry
EXPECTED = {
    "/usr/bin/cbr-agent": 0o100755,
    "/opt/cbr-agent/libexec/make-venv": 0o100755,
    "/opt/cbr-agent/libexec/install.sh": 0o100755,
    "/usr/share/doc/cbr-agent/examples/cloud-init.yaml": 0o100644,
    "/usr/share/doc/cbr-agent/examples/ansible/playbook.yml": 0o100644,
    "/usr/share/doc/cbr-agent/examples/ansible/roles/cbr_agent/tasks/main.yml": 0o100644,
    "/usr/share/doc/cbr-agent/examples/ansible": 0o040755,
    "/opt/cbr-agent/VERSION": 0o100644,
    "/opt/cbr-agent/python-versions": 0o100644,
    "/usr/lib/systemd/system/cbr-agent.service": 0o100644,
    "/usr/lib/tmpfiles.d/cbr-agent.conf": 0o100644,
    "/etc/cbr-agent/agent.env": 0o100600,
    "/etc/cbr-agent": 0o040700,
    "/var/lib/cbr-agent": 0o040700,
    "/var/cache/cbr-agent": 0o040700,
    "/usr/share/doc/cbr-agent/README.md": 0o100644,
    "/usr/share/bash-completion/completions/cbr-agent": 0o100644,
    "/usr/share/man/man1/cbr-agent.1.gz": 0o100644,
    # the directories it creates are its own (rpm lists only what it is told)
    "/opt/cbr-agent": 0o040755,
    "/opt/cbr-agent/wheels": 0o040755,
    "/opt/cbr-agent/libexec": 0o040755,
    "/usr/share/doc/cbr-agent": 0o040755,
}


def deb_listing(deb: Path) -> dict[str, int]:
    """path -> mode from ``dpkg-deb --contents``."""
    out = subprocess.run(["dpkg-deb", "--contents", str(deb)], check=True, capture_output=True,
                         text=True).stdout
    listing = {}
    for line in out.splitlines():
        perms, _owner, _size, _date, _time, name = line.split(None, 5)
        path = "/" + name.removeprefix("./").rstrip("/")
        kind = {"d": stat.S_IFDIR, "-": stat.S_IFREG, "l": stat.S_IFLNK}[perms[0]]
        bits = sum(1 << (8 - i) for i, c in enumerate(perms[1:10]) if c != "-")
        listing[path.split(" -> ")[0]] = kind | bits
    return listing


def deb_field(deb: Path, field: str) -> str:
    return subprocess.run(["dpkg-deb", "--field", str(deb), field], check=True, capture_output=True,
                          text=True).stdout.strip()


def deb_control_file(deb: Path, name: str) -> str:
    return subprocess.run(["dpkg-deb", "--info", str(deb), name], check=True, capture_output=True,
                          text=True).stdout


def test_build_makes_all_four_artifacts(built_packages: Built) -> None:
    for artifact in (built_packages.deb, built_packages.rpm, built_packages.wheel, built_packages.sdist):
        assert artifact.is_file() and artifact.stat().st_size > 0, artifact


def test_deb_holds_the_files_with_their_modes(built_packages: Built) -> None:
    listing = deb_listing(built_packages.deb)
    for path, mode in EXPECTED.items():
        assert listing.get(path) == mode, f"{path}: {oct(listing.get(path) or 0)} != {oct(mode)}"
    wheels = sorted(p.rsplit("/", 1)[1] for p in listing if p.startswith("/opt/cbr-agent/wheels/"))
    assert f"cbr_agent-{built_packages.version}-py3-none-any.whl" in wheels
    assert any(w.startswith("pip-") for w in wheels)
    # every compiled dependency for the Python the package was built for
    for version in built_packages.python_versions.split():
        tag = "cp" + version.replace(".", "")
        for dep in ("cryptography", "psutil", "pyfastcdc", "blake3", "zstandard"):
            assert any(w.startswith(dep + "-") and ("abi3" in w or f"-{tag}-" in w) for w in wheels), \
                (dep, version)
    assert not any(p.startswith("/opt/cbr-agent/venv") for p in listing), "the venv is built at install"
    # zsh finds vendor completions here on Debian and Ubuntu
    assert listing.get("/usr/share/zsh/vendor-completions/_cbr-agent") == 0o100644


def test_deb_control_declares_python_and_the_conffile(built_packages: Built) -> None:
    deb = built_packages.deb
    assert deb_field(deb, "Package") == "cbr-agent"
    assert deb_field(deb, "Version") == f"{built_packages.version}-1"
    assert deb_field(deb, "Architecture") == "amd64"
    assert deb_field(deb, "Depends") == "python3 (>= 3.10)"
    assert deb_control_file(deb, "conffiles").split() == ["/etc/cbr-agent/agent.env"]


@pytest.mark.parametrize("script, source", [("postinst", "postinstall.sh"), ("prerm", "preremove.sh"),
                                            ("postrm", "postremove.sh")])
def test_deb_maintainer_scripts_are_ours_and_parse(built_packages: Built, script: str, source: str,
                                                   tmp_path: Path) -> None:
    text = deb_control_file(built_packages.deb, script)
    assert text == (REPO / "packaging" / "scripts" / source).read_text(encoding="utf-8")
    copy = tmp_path / script
    copy.write_text(text)
    subprocess.run(["sh", "-n", str(copy)], check=True)


def test_rpm_declares_what_the_deb_does(built_packages: Built) -> None:
    info = read_rpm(built_packages.rpm)
    assert info.name == "cbr-agent"
    assert info.version == f"{built_packages.version}-1"
    assert info.arch == "x86_64"
    assert "(python3 >= 3.10 or python3.14 or python3.13 or python3.12 or python3.11)" in info.requires
    files = info.files
    for path, mode in EXPECTED.items():
        assert path in files and files[path].mode == mode, f"{path}: {files.get(path)}"
    assert files["/usr/share/zsh/site-functions/_cbr-agent"].mode == 0o100644  # zsh's path on RPM systems
    env_flags = files["/etc/cbr-agent/agent.env"].flags
    assert env_flags & RPMFILE_CONFIG and env_flags & RPMFILE_NOREPLACE
    scripts = REPO / "packaging" / "scripts"
    assert info.script(TAG_POSTIN) == (scripts / "postinstall.sh").read_text(encoding="utf-8")
    assert info.script(TAG_PREUN) == (scripts / "preremove.sh").read_text(encoding="utf-8")
    assert info.script(TAG_POSTUN) == (scripts / "postremove.sh").read_text(encoding="utf-8")


def test_sdist_carries_readme_service_and_packaging(built_packages: Built) -> None:
    with tarfile.open(built_packages.sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    for needed in ("README.md", "pyproject.toml", "cbr_agent/__init__.py", "cbr_agent/cli/main.py",
                   "service/cbr-agent.service", "service/agent.env", "packaging/build.sh",
                   "packaging/install.sh", "packaging/nfpm.yaml", "packaging/scripts/postinstall.sh"):
        assert needed in names, needed


def test_wheel_is_pure_python_with_the_console_script(built_packages: Built) -> None:
    with zipfile.ZipFile(built_packages.wheel) as whl:
        names = whl.namelist()
        entry_points = whl.read(f"cbr_agent-{built_packages.version}.dist-info/entry_points.txt").decode()
        metadata = whl.read(f"cbr_agent-{built_packages.version}.dist-info/METADATA").decode()
    assert "cbr_agent/cli/main.py" in names
    assert not any(n.startswith("tests/") for n in names)
    assert "cbr-agent = cbr_agent.cli.main:main" in entry_points
    assert "Requires-Python: >=3.10" in metadata


def test_wheel_installs_with_pip_into_a_fresh_venv(built_packages: Built, installed_root: DpkgRoot,
                                                   tmp_path: Path) -> None:
    """As a user would: pip install the wheel (its dependencies from the wheels the .deb shipped,
    since tests have no network)."""
    target = tmp_path / "venv"
    subprocess.run([str(SYSTEM_PYTHON), "-m", "venv", "--without-pip", str(target)], check=True)
    wheels = installed_root / "opt/cbr-agent/wheels"
    pip = next(wheels.glob("pip-*.whl"))
    # without PYTHONPATH: a source tree on it (with its egg-info) would make pip skip the package
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, "PIP_CONFIG_FILE": os.devnull}
    subprocess.run([str(target / "bin/python"), f"{pip}/pip", "install", "--isolated", "--no-index",
                    "--find-links", str(wheels), "--quiet", str(built_packages.wheel)],
                   check=True, env=env, timeout=300)
    proc = subprocess.run([str(target / "bin/cbr-agent"), "--version"], capture_output=True, text=True)
    assert proc.stdout.strip() == f"cbr-agent {built_packages.version}"


def test_venv_builds_with_every_other_python_here(built_packages: Built, dpkg_root: DpkgRoot) -> None:
    """The same package serves other Python versions (other distributions): the venv builder is run
    with each other CPython 3.10+ on this machine, and the agent runs from each venv."""
    interpreters = other_interpreters()
    if not interpreters:
        pytest.skip("no CPython 3.10+ besides the system one on this machine")
    dpkg_root.install(built_packages.deb)
    for version, python in sorted(interpreters.items()):
        proc = subprocess.run([str(dpkg_root / "opt/cbr-agent/libexec/make-venv")], capture_output=True,
                              text=True, env={**os.environ, "CBR_AGENT_INSTALL_PYTHON": str(python)})
        assert proc.returncode == 0, proc.stderr
        assert (dpkg_root / "opt/cbr-agent/venv").readlink().name.startswith(
            f"{built_packages.version}-py{version}-")
        run = dpkg_root.cli("--version")
        assert run.stdout.strip() == f"cbr-agent {built_packages.version}", (version, run.stderr)
        status = dpkg_root.cli("status", "--json")
        assert status.returncode == 0, (version, status.stderr)


def test_venv_builder_refuses_a_python_without_wheels(installed_root: DpkgRoot, tmp_path: Path) -> None:
    """make-venv picks a Python the package has wheels for, and says so plainly when there is none."""
    fake = tmp_path / "python3.99"
    fake.write_text("#!/bin/sh\necho 3.99\n")
    fake.chmod(0o755)
    proc = subprocess.run([str(installed_root / "opt/cbr-agent/libexec/make-venv")], capture_output=True,
                          text=True, env={**os.environ, "CBR_AGENT_INSTALL_PYTHON": str(fake)})
    assert proc.returncode == 7
    assert "this package has wheels for Python" in proc.stderr
