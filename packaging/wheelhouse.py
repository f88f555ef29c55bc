"""Complete a directory of wheels downloaded for another Python version (used by build.sh).

``pip download --python-version X`` picks wheels for X but evaluates environment markers for the
Python that runs pip, so a dependency such as ``tomli; python_version < "3.11"`` is left out when the
build runs on 3.11 for 3.10. This reads every wheel's requirements, evaluates their markers for the
target Python on Linux, and downloads what is missing (with the same pip options), until nothing is.

    python3 packaging/wheelhouse.py --python-version 3.10 --machine x86_64 --dir DIR -- PIP_OPTIONS...
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename

MAX_ROUNDS = 10


def target_environment(version: str, machine: str) -> dict[str, str]:
    return {
        "python_version": version,
        "python_full_version": f"{version}.0",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "os_name": "posix",
        "platform_machine": machine,
        "extra": "",
    }


def wheel_requirements(wheel: Path) -> list[Requirement]:
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = Parser().parsestr(archive.read(name).decode("utf-8"))
    return [Requirement(line) for line in metadata.get_all("Requires-Dist") or []]


def missing(directory: Path, environment: dict[str, str]) -> list[str]:
    present = {canonicalize_name(parse_wheel_filename(w.name)[0]) for w in directory.glob("*.whl")}
    wanted: dict[str, str] = {}
    for wheel in sorted(directory.glob("*.whl")):
        for req in wheel_requirements(wheel):
            if req.marker is not None and not req.marker.evaluate(environment):
                continue
            name = canonicalize_name(req.name)
            if name not in present:
                req.marker = None
                wanted.setdefault(name, str(req))
    return sorted(wanted.values())


def main(argv: list[str]) -> int:
    if "--" in argv:
        split = argv.index("--")
        own, pip_options = argv[:split], argv[split + 1:]
    else:
        own, pip_options = argv, []
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python-version", required=True)
    parser.add_argument("--machine", required=True)
    parser.add_argument("--dir", type=Path, required=True)
    args = parser.parse_args(own)
    environment = target_environment(args.python_version, args.machine)
    for _ in range(MAX_ROUNDS):
        needed = missing(args.dir, environment)
        if not needed:
            return 0
        print(f"wheelhouse.py: for Python {args.python_version} also: {', '.join(needed)}", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "pip", "download", *pip_options, "--dest", str(args.dir),
                        *needed], check=True)
    print(f"wheelhouse.py: still incomplete after {MAX_ROUNDS} rounds: {missing(args.dir, environment)}",
          file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
