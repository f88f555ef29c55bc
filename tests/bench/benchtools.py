"""The three contenders: how to init, back up and restore with each, each in its own directory."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

PASSWORD = "bench-password-not-secret"
#: the checkout this benchmark belongs to: its cbr-agent is the one measured, never an older installed copy
CHECKOUT = Path(__file__).resolve().parents[2]
#: environment variables of the tools that must not leak in from the caller
_FOREIGN = ("CBR_AGENT_", "RESTIC_", "BORG_")

INSTALL_HINT = ("restic and BorgBackup come from Debian's packages: "
                "`apt-get update && apt-get install -y restic borgbackup` (as root)")


@dataclass
class Tool:
    """One tool with its repository, cache/state and restore target under ``base``."""

    name: str
    base: Path

    @property
    def repo(self) -> Path:
        return self.base / "repo"

    def prepare(self) -> None:
        """A fresh, empty working directory (the repository does not exist yet)."""
        if self.base.exists():
            shutil.rmtree(self.base)
        (self.base / "home").mkdir(parents=True)

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(_FOREIGN)}
        env["HOME"] = str(self.base / "home")
        env["XDG_CACHE_HOME"] = str(self.base / "home" / ".cache")
        env["XDG_CONFIG_HOME"] = str(self.base / "home" / ".config")
        env["XDG_DATA_HOME"] = str(self.base / "home" / ".local" / "share")
        return env

    def init_cmd(self) -> list[str]:
        raise NotImplementedError

    def backup_cmd(self, source: Path, n: int) -> list[str]:
        raise NotImplementedError

    def restore_cmd(self, target: Path, n: int) -> tuple[list[str], Path]:
        """The command restoring the latest (``n``-th) snapshot into ``target`` and the cwd to run it in."""
        raise NotImplementedError

    def restored_root(self, target: Path, source: Path) -> Path:
        """Where the restored copy of ``source`` lands under ``target``."""
        return target / source.relative_to(source.anchor)


class Restic(Tool):
    def env(self) -> dict[str, str]:
        env = super().env()
        env["RESTIC_PASSWORD"] = PASSWORD
        env["RESTIC_REPOSITORY"] = str(self.repo)
        env["RESTIC_CACHE_DIR"] = str(self.base / "cache")
        return env

    def init_cmd(self) -> list[str]:
        return ["restic", "init", "-q"]

    def backup_cmd(self, source: Path, n: int) -> list[str]:
        return ["restic", "backup", "-q", "--host", "bench", str(source)]

    def restore_cmd(self, target: Path, n: int) -> tuple[list[str], Path]:
        return ["restic", "restore", "latest", "--host", "bench", "--target", str(target), "-q"], self.base


class Borg(Tool):
    """BorgBackup; ``compression`` None means its default (lz4 in 1.2)."""

    compression: str | None = None

    def env(self) -> dict[str, str]:
        env = super().env()
        env["BORG_PASSPHRASE"] = PASSWORD
        env["BORG_BASE_DIR"] = str(self.base / "home")
        env["BORG_RELOCATED_REPO_ACCESS_IS_OK"] = "yes"
        return env

    def init_cmd(self) -> list[str]:
        return ["borg", "init", "-e", "repokey", str(self.repo)]

    def backup_cmd(self, source: Path, n: int) -> list[str]:
        comp = ["--compression", self.compression] if self.compression else []
        return ["borg", "create", *comp, f"{self.repo}::bench-{n}", str(source)]

    def restore_cmd(self, target: Path, n: int) -> tuple[list[str], Path]:
        return ["borg", "extract", f"{self.repo}::bench-{n}"], target


class BorgZstd(Borg):
    compression = "zstd,3"


class CbrAgent(Tool):
    def env(self) -> dict[str, str]:
        env = super().env()
        env["CBR_AGENT_PASSWORD"] = PASSWORD
        env["CBR_AGENT_REPOSITORY"] = str(self.repo)
        env["CBR_AGENT_CONFIG"] = str(self._config())
        env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(CHECKOUT), env.get("PYTHONPATH"))))
        return env

    def _config(self) -> Path:
        path = self.base / "agent.toml"
        if not path.exists():
            path.write_text("# benchmark: everything else comes from the environment\n")
        return path

    def _prefix(self) -> list[str]:
        return [sys.executable, "-m", "cbr_agent", "--state-dir", str(self.base / "state")]

    def init_cmd(self) -> list[str]:
        return [*self._prefix(), "init"]

    def backup_cmd(self, source: Path, n: int) -> list[str]:
        return [*self._prefix(), "backup", "--json", str(source)]

    def restore_cmd(self, target: Path, n: int) -> tuple[list[str], Path]:
        return [*self._prefix(), "restore", "latest", "--target", str(target)], self.base

    def restored_root(self, target: Path, source: Path) -> Path:
        for candidate in (target / source.relative_to(source.anchor), target / source.name):
            if candidate.is_dir():
                return candidate
        return target


TOOLS: dict[str, type[Tool]] = {"cbr-agent": CbrAgent, "restic": Restic, "borg": Borg, "borg-zstd": BorgZstd}


def _cbr_agent_version(env: dict[str, str]) -> str | None:
    out = subprocess.run([sys.executable, "-m", "cbr_agent", "init", "--help"],
                         capture_output=True, text=True, timeout=60, env=env)
    if out.returncode != 0:
        return None
    where = subprocess.run([sys.executable, "-c", "import cbr_agent as c; print(c.__version__, c.__file__)"],
                           capture_output=True, text=True, timeout=60, env=env)
    version, _, path = where.stdout.strip().partition(" ")
    return f"cbr-agent {version} from {Path(path).parent.parent} (python {sys.version.split()[0]})"


def version(name: str) -> str | None:
    """The tool's version line, or None when it is not installed / not usable."""
    try:
        if name == "cbr-agent":
            with tempfile.TemporaryDirectory() as scratch:  # env() writes the tool's config file there
                return _cbr_agent_version(CbrAgent(name, Path(scratch)).env())
        exe = "borg" if name.startswith("borg") else name
        if not shutil.which(exe):
            return None
        args = [exe, "version"] if exe == "restic" else [exe, "--version"]
        return subprocess.run(args, capture_output=True, text=True, timeout=60).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
