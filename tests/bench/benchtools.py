"""The contenders: how to init, back up and restore with each, each in its own directory.

``cbr-agent-s3`` and ``restic-s3`` are the same tools with their repository in an S3 bucket, on a moto S3
server (``python -m moto.server``, from the ``test`` extra) that the benchmark starts on 127.0.0.1."""

from __future__ import annotations

import atexit
import hashlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
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

    def repo_usage(self) -> tuple[int, int]:
        """(allocated, apparent) bytes of the repository."""
        from measure import disk_usage

        return disk_usage(self.repo)


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


# ---------------------------------------------------------------- the same tools on an S3 server

S3_KEY, S3_SECRET = "AKIABENCHMOTO0000001", "bench-moto-secret-not-a-real-one"


class S3Server:
    """One moto S3 server process on 127.0.0.1 for the whole benchmark (stopped at exit)."""

    _url: str | None = None

    @classmethod
    def url(cls) -> str:
        if cls._url is None:
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                port = sock.getsockname()[1]
            proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            atexit.register(proc.terminate)
            url = f"http://127.0.0.1:{port}"
            for _ in range(100):
                try:
                    urllib.request.urlopen(url + "/moto-api/", timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.1)
            cls._url = url
        return cls._url


class S3Tool(Tool):
    """Mixin: the repository is ``s3://<bucket named after base>/repo`` on the moto server."""

    @property
    def bucket(self) -> str:
        return "bench-" + hashlib.sha256(str(self.base).encode()).hexdigest()[:16]

    def s3_env(self, env: dict[str, str]) -> dict[str, str]:
        env = {k: v for k, v in env.items() if not k.startswith("AWS_")}
        env.update(AWS_ACCESS_KEY_ID=S3_KEY, AWS_SECRET_ACCESS_KEY=S3_SECRET, AWS_DEFAULT_REGION="us-east-1",
                   AWS_EC2_METADATA_DISABLED="true")
        return env

    def repo_usage(self) -> tuple[int, int]:
        import boto3

        client = boto3.client("s3", endpoint_url=S3Server.url(), region_name="us-east-1",
                              aws_access_key_id=S3_KEY, aws_secret_access_key=S3_SECRET)
        total = 0
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket):
            total += sum(item["Size"] for item in page.get("Contents", ()))
        return total, total


class CbrAgentS3(S3Tool, CbrAgent):
    def env(self) -> dict[str, str]:
        env = self.s3_env(CbrAgent.env(self))
        env.update(CBR_AGENT_REPOSITORY=f"s3://{self.bucket}/repo", CBR_AGENT_S3_ENDPOINT=S3Server.url(),
                   CBR_AGENT_S3_PATH_STYLE="true", CBR_AGENT_S3_REGION="us-east-1")
        return env


class ResticS3(S3Tool, Restic):
    def env(self) -> dict[str, str]:
        env = self.s3_env(Restic.env(self))
        env["RESTIC_REPOSITORY"] = f"s3:{S3Server.url()}/{self.bucket}/repo"
        return env


TOOLS: dict[str, type[Tool]] = {"cbr-agent": CbrAgent, "restic": Restic, "borg": Borg, "borg-zstd": BorgZstd,
                                "cbr-agent-s3": CbrAgentS3, "restic-s3": ResticS3}


def compile_bytecode(checkout: Path = CHECKOUT) -> None:
    """Write the checkout's bytecode before anything is timed, as ``pip install`` does for an installed
    agent. Where ``PYTHONDONTWRITEBYTECODE`` is set (this build machine sets it), every cbr-agent command,
    and every helper process a backup starts, would otherwise compile its modules from source again:
    0.15-0.2 s of CPU each here, which the installed agent never pays."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run([sys.executable, "-m", "compileall", "-q", "-j", "0", str(checkout / "cbr_agent")],
                   env=env, check=True, timeout=600)


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
        if name.endswith("-s3"):
            import boto3  # noqa: F401  (the test extra: boto3 and moto)
            import moto.server  # noqa: F401
        if name.startswith("cbr-agent"):
            with tempfile.TemporaryDirectory() as scratch:  # env() writes the tool's config file there
                return _cbr_agent_version(CbrAgent(name, Path(scratch)).env())
        exe = "borg" if name.startswith("borg") else name.removesuffix("-s3")
        if not shutil.which(exe):
            return None
        args = [exe, "version"] if exe == "restic" else [exe, "--version"]
        return subprocess.run(args, capture_output=True, text=True, timeout=60).stdout.strip()
    except (OSError, subprocess.SubprocessError, ImportError):
        return None
