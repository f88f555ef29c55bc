"""A temporary PostgreSQL cluster for tests (Debian's ``postgresql`` package): ``initdb`` and
``postgres`` run as the ``postgres`` user when the tests run as root (PostgreSQL refuses root), in a
fresh directory of their own, on a free loopback port; the socket lives in that directory too.
Each test gets a database of its own from :meth:`PgCluster.new_database`."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path


def find_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                   key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0)
    return found[-1].parent if found else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PgCluster:
    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="cbr-agent-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self.as_postgres = os.geteuid() == 0
        if self.as_postgres:
            user = pwd.getpwnam("postgres")
            os.chown(self.root, user.pw_uid, user.pw_gid)
        os.chmod(self.root, 0o700)
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [str(self.bindir / argv[0]), *argv[1:]]
        if self.as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, capture_output=True, text=True, check=check, timeout=60,
                              cwd=self.root)

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync",
                  "-E", "UTF8", "--locale=C")
        # the role "cbr" logs in with a password (the password tests), everyone else is trusted
        hba = self.data / "pg_hba.conf"
        hba.write_text("host all cbr 127.0.0.1/32 scram-sha-256\n" + hba.read_text())
        self.start()

    def start(self) -> None:
        options = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c max_connections=300")
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.root / "log"), "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def new_database(self) -> str:
        import psycopg

        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url.rsplit("/", 1)[0] + "/" + name

    def destroy(self) -> None:
        self.stop("immediate")
        with contextlib.suppress(OSError):
            shutil.rmtree(self.root)


def start_cluster() -> tuple[PgCluster | None, str]:
    """``(cluster, "")`` or ``(None, why not)``."""
    bindir = find_bin()
    if bindir is None:
        return None, "PostgreSQL is not installed (Debian package 'postgresql'; .ci/run installs it)"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return None, "psycopg is not installed (the 'postgres' extra: pip install 'cbr-agent[postgres]')"
    cluster = PgCluster(bindir)
    try:
        cluster.init()
    except (subprocess.SubprocessError, OSError, KeyError) as exc:
        cluster.destroy()
        detail = getattr(exc, "stderr", "") or exc
        return None, f"a temporary PostgreSQL cluster could not be started: {detail}"
    return cluster, ""


def bench_database(spec: str | None) -> tuple[str | None, PgCluster | None]:
    """For the benchmarks' ``--db``: ``postgres`` starts a temporary cluster (destroy it after)."""
    if spec != "postgres":
        return spec, None
    cluster, why = start_cluster()
    if cluster is None:
        raise SystemExit(why)
    return cluster.new_database(), cluster
