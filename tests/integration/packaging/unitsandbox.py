"""Run a command under the file-system restrictions of a systemd unit, without systemd.

These machines have no systemd as PID 1, so the test suite rebuilds what the service's unit asks of
the file system in a private mount namespace (run this module under ``unshare -m --propagation
private``, as root) and then executes the command:

- ``--layer DIR=UPPER``: DIR (``/etc``, ``/var/lib``...) gets an overlay whose writes land in UPPER, a
  scratch dir: what the package and the test put into ``/etc/cbr-agent`` appears there without
  touching this host (the namespace dies with the command);
- ``StateDirectory=`` / ``CacheDirectory=``: created below ``/var/lib`` / ``/var/cache`` with their
  ``*DirectoryMode=``, and writable, as systemd does;
- ``ReadWritePaths=``: bind-mounted onto themselves, so they stay writable;
- ``PrivateTmp=yes``: a fresh tmpfs on ``/tmp`` and ``/var/tmp``;
- ``ProtectSystem=strict``: then every other mount is made read-only, except the API file systems
  ``/proc``, ``/sys`` and ``/dev`` (``ProtectHome=read-only`` is included in that);
- ``UMask=``, ``Environment=`` and ``EnvironmentFile=`` are applied to the command.

    python3 unitsandbox.py --unit FILE [--layer DIR=UPPER]... [--layers-only] -- COMMAND...

``--layers-only`` sets up the layers alone (an administrator's step, such as ``cbr-agent path add``,
which runs as root outside the service's restrictions) and runs COMMAND there.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

API_FILESYSTEMS = ("/proc", "/sys", "/dev")


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
        if current is None:
            raise ValueError(f"key outside a section: {line}")
        key, _, value = line.partition("=")
        current[key.strip()].append(value.strip())
    return sections


def _words(values: list[str]) -> list[str]:
    return [word for value in values for word in value.split()]


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True)


def _mount_points() -> list[str]:
    points = []
    with open("/proc/self/mountinfo", encoding="utf-8") as fh:
        for line in fh:
            raw = line.split()[4]
            # mountinfo escapes space, tab, newline and backslash as octal
            points.append(raw.encode().decode("unicode_escape"))
    return points


def _under(path: str, roots: tuple[str, ...] | list[str]) -> bool:
    return any(path == root or path.startswith(root.rstrip("/") + "/") for root in roots)


def add_layers(layers: list[tuple[str, Path]]) -> None:
    for directory, upper in layers:
        work = upper.parent / (upper.name + ".work")
        upper.mkdir(parents=True, exist_ok=True)
        work.mkdir(parents=True, exist_ok=True)
        _mount("-t", "overlay", "overlay", "-o",
               f"lowerdir={directory},upperdir={upper},workdir={work}", directory)


PRIVATE_TMP = ("/tmp", "/var/tmp")


def _hold(paths: list[str]) -> list[tuple[str, str]]:
    """Bind each path somewhere the private /tmp will not cover (the test's own files: the source
    tree, a dpkg root; pytest may keep them below /tmp), to be put back on top of it."""
    held = []
    for number, path in enumerate(paths):
        spot = f"/dev/shm/unitsandbox-keep-{os.getpid()}-{number}"
        os.makedirs(spot)
        _mount("--bind", path, spot)
        held.append((path, spot))
    return held


def _put_back(held: list[tuple[str, str]]) -> None:
    for path, spot in held:
        os.makedirs(path, exist_ok=True)
        _mount("--bind", spot, path)
        subprocess.run(["umount", spot], check=True)
        os.rmdir(spot)


def protect(service: dict[str, list[str]], keep: list[str] | tuple[str, ...] = ()) -> None:
    """``keep``: the test's own paths that stay visible (read-only) through the private /tmp."""
    writable: list[str] = []
    for key, base in (("StateDirectory", "/var/lib"), ("CacheDirectory", "/var/cache")):
        mode = int((service.get(key.replace("Directory", "DirectoryMode")) or ["0755"])[0], 8)
        for name in _words(service.get(key, [])):
            path = Path(base) / name
            path.mkdir(parents=True, exist_ok=True)
            path.chmod(mode)
            writable.append(str(path))
    for path in _words(service.get("ReadWritePaths", [])):
        optional = path.startswith("-")
        path = path.lstrip("-")
        if not os.path.isdir(path):
            if optional:
                continue
            raise SystemExit(f"unitsandbox: ReadWritePaths {path} does not exist (systemd would refuse)")
        writable.append(path)
    for path in dict.fromkeys(writable):
        _mount("--bind", path, path)
    private_tmp = service.get("PrivateTmp", ["no"])[-1] in ("yes", "true", "1")
    if private_tmp:
        held = _hold([k for k in keep if _under(k, PRIVATE_TMP)])
        for path in PRIVATE_TMP:
            _mount("-t", "tmpfs", "-o", "mode=1777", "tmpfs", path)
            writable.append(path)
        _put_back(held)
    if service.get("ProtectSystem", ["no"])[-1] != "strict":
        raise SystemExit("unitsandbox: only ProtectSystem=strict is implemented")
    for point in sorted(set(_mount_points())):
        if _under(point, API_FILESYSTEMS) or point in writable:
            continue
        _mount("-o", "remount,bind,ro", point)


def environment(service: dict[str, list[str]]) -> dict[str, str]:
    env = dict(os.environ)
    for value in service.get("EnvironmentFile", []):
        path = value.lstrip("-")
        if not os.path.exists(path):
            if value.startswith("-"):
                continue
            raise SystemExit(f"unitsandbox: EnvironmentFile {path} does not exist")
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                key, _, val = line.partition("=")
                env[key.strip()] = val.strip()
    for value in service.get("Environment", []):
        for assignment in shlex.split(value):
            key, _, val = assignment.partition("=")
            env[key] = val
    return env


def main(argv: list[str]) -> int:
    split = argv.index("--")
    own, command = argv[:split], argv[split + 1:]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--unit", type=Path, required=True)
    parser.add_argument("--layer", action="append", default=[], metavar="DIR=UPPER")
    parser.add_argument("--layers-only", action="store_true")
    parser.add_argument("--keep", action="append", default=[], metavar="DIR",
                        help="a path of the test's own (source tree, dpkg root) that the private /tmp "
                        "must not hide")
    args = parser.parse_args(own)
    if os.geteuid() != 0:
        raise SystemExit("unitsandbox: needs root (mount)")
    service = parse_unit(args.unit.read_text(encoding="utf-8"))["Service"]
    add_layers([(d, Path(u)) for d, _, u in (layer.partition("=") for layer in args.layer)])
    if args.layers_only:
        os.execvp(command[0], command)
    protect(service, keep=[os.path.realpath(k) for k in args.keep])
    env = environment(service)
    if service.get("UMask"):
        os.umask(int(service["UMask"][-1], 8))
    os.execvpe(command[0], command, env)
    return 1  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
