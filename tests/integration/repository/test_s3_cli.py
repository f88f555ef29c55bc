"""The real CLI (``python -m cbr_agent`` subprocesses) against moto's S3 server on loopback, directly and
through the fault proxy: the whole lifecycle, one-line errors, faults in the middle of a backup, and
append-only credentials (every DELETE refused)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.conftest import free_port
from tests.integration.engine.treeutil import assert_same_tree, random_bytes, write
from tests.integration.repository.s3server import ACCESS_KEY, SECRET_KEY

PASSWORD = "s3 test password"
MiB = 1024 * 1024


class S3Cli:
    def __init__(self, tmp: Path, endpoint: str, bucket: str, *, aws_env: bool = False) -> None:
        self.tmp = tmp
        self.url = f"s3://{bucket}/hosts/web-1"
        self.config = tmp / "agent.toml"
        creds = tmp / "credentials.toml"
        if aws_env:
            self.config.write_text("")
        else:
            creds.write_text(f's3_access_key_id = "{ACCESS_KEY}"\ns3_secret_access_key = "{SECRET_KEY}"\n')
            creds.chmod(0o600)
            self.config.write_text(f'credentials_file = "{creds}"\n')
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CBR_AGENT_", "AWS_"))}
        env.update(CBR_AGENT_CONFIG=str(self.config), CBR_AGENT_STATE_DIR=str(tmp / "state"),
                   CBR_AGENT_PASSWORD=PASSWORD, CBR_AGENT_INSECURE_TEST_KDF="1",
                   CBR_AGENT_REPOSITORY=self.url, CBR_AGENT_S3_PATH_STYLE="true",
                   CBR_AGENT_S3_REGION="us-east-1", CBR_AGENT_S3_RETRIES="4",
                   CBR_AGENT_TEST_S3_BACKOFF="0.01", AWS_EC2_METADATA_DISABLED="true",
                   HOME=str(tmp / "home"))
        if aws_env:
            env.update(AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY)
        self.env = env
        self.endpoint(endpoint)

    def endpoint(self, url: str) -> None:
        self.env["CBR_AGENT_S3_ENDPOINT"] = url

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "cbr_agent", *args], env=self.env, capture_output=True,
                              text=True, timeout=timeout)

    def json(self, *args: str) -> object:
        done = self.run(*args, "--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    """The one error line (log warnings may come before it), without a traceback or a secret."""
    assert "Traceback" not in done.stderr and SECRET_KEY not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("cbr-agent: error:")]
    assert len(lines) == 1, done.stderr
    return lines[0]


def big_tree(root: Path, files: int = 4, size: int = 5 * MiB) -> Path:
    """Several packs' worth of incompressible data."""
    for i in range(files):
        write(root / f"f{i}.bin", random_bytes(size, i))
    write(root / "small.txt", b"small\n")
    return root


@pytest.mark.slow
def test_lifecycle_init_backup_restore_check_forget_prune(moto_s3, bucket_name, tmp_path) -> None:
    cli = S3Cli(tmp_path, moto_s3.url, bucket_name)
    created = cli.json("init")  # the bucket does not exist yet: init creates it
    assert created["location"] == cli.url
    src = tmp_path / "src"
    write(src / "a.txt", b"hello\n" * 1000)
    write(src / "b.bin", random_bytes(300_000, 7))
    first = cli.json("backup", str(src))
    write(src / "c.txt", b"more")
    second = cli.json("backup", str(src))
    assert second["files_unchanged"] == 2 and second["files_new"] == 1
    assert [s["id"] for s in cli.json("snapshots")] == [first["snapshot_id"], second["snapshot_id"]]
    restored = cli.run("restore", "latest", "--target", str(tmp_path / "out"))
    assert restored.returncode == 0, restored.stderr
    assert_same_tree(src, tmp_path / "out" / src.relative_to("/"))
    check = cli.json("check", "--read-data")
    assert check["ok"] and check["snapshots"] == 2
    forgot = cli.json("forget", "--keep-last", "1", "--prune")
    assert forgot["forget"] == [first["snapshot_id"]] and forgot["prune"]["snapshots"] == 1
    assert cli.json("check", "--read-data")["ok"]


def test_aws_environment_credentials_work(moto_s3, bucket_name, tmp_path) -> None:
    cli = S3Cli(tmp_path, moto_s3.url, bucket_name, aws_env=True)
    assert cli.run("init").returncode == 0
    assert cli.json("snapshots") == []


def test_wrong_endpoint_bad_credentials_missing_bucket_are_one_line(moto_s3, fault_proxy, bucket_name,
                                                                    tmp_path) -> None:
    cli = S3Cli(tmp_path, f"http://127.0.0.1:{free_port()}", bucket_name)
    done = cli.run("snapshots")
    assert done.returncode == 4 and "after 4 attempts" in one_line_error(done)
    cli.endpoint(moto_s3.url)
    done = cli.run("snapshots")
    assert done.returncode == 10 and "no repository at" in one_line_error(done)
    fault_proxy.add("badkey")
    cli.endpoint(fault_proxy.url)
    done = cli.run("snapshots")
    assert done.returncode == 5 and "InvalidAccessKeyId" in one_line_error(done)


def test_outage_storm_and_cut_uploads_are_ridden_out(moto_s3, fault_proxy, bucket_name, tmp_path) -> None:
    cli = S3Cli(tmp_path, moto_s3.url, bucket_name)
    assert cli.run("init").returncode == 0
    cli.endpoint(fault_proxy.url)
    src = big_tree(tmp_path / "src", files=3)
    fault_proxy.add("down", count=2)  # a short outage
    fault_proxy.add("slowdown", method="PUT", match="/data/", count=2)
    fault_proxy.add("cut", method="PUT", match="/data/", skip=1, count=1)
    summary = cli.json("backup", str(src))
    assert summary["snapshot_id"]
    assert fault_proxy.count("PUT", 503) == 2 and fault_proxy.count("PUT", 0) >= 1
    assert cli.json("check", "--read-data")["ok"]


@pytest.mark.slow
def test_endpoint_down_mid_backup_fails_cleanly(moto_s3, fault_proxy, bucket_name, tmp_path) -> None:
    cli = S3Cli(tmp_path, moto_s3.url, bucket_name)
    assert cli.run("init").returncode == 0
    cli.endpoint(fault_proxy.url)
    src = big_tree(tmp_path / "src")
    fault_proxy.add("kill", method="PUT", match="/data/", skip=1)  # gone after the first pack
    done = cli.run("backup", str(src))
    assert done.returncode == 4, done.stderr
    assert "writing data/" in one_line_error(done)  # the cause, not what failed after it
    fault_proxy.clear()
    assert cli.json("snapshots") == []  # no snapshot
    check = cli.json("check")
    assert check["ok"]  # what reached the bucket is at most unreferenced
    assert cli.json("backup", str(src))["snapshot_id"]
    assert cli.json("check", "--read-data")["ok"]


@pytest.mark.slow
def test_storm_longer_than_the_retries_fails_cleanly_and_the_next_backup_reuses(
        moto_s3, fault_proxy, bucket_name, tmp_path) -> None:
    cli = S3Cli(tmp_path, moto_s3.url, bucket_name)
    assert cli.run("init").returncode == 0
    cli.endpoint(fault_proxy.url)
    src = big_tree(tmp_path / "src")
    fault_proxy.add("slowdown", method="PUT", match="/data/", skip=2)  # two packs go up, then a storm
    done = cli.run("backup", str(src))
    assert done.returncode == 4 and "SlowDown" in one_line_error(done)
    fault_proxy.clear()
    assert cli.json("snapshots") == []
    check = cli.json("check")
    assert check["ok"] and check["packs"] >= 2 and check["index_files"] >= 1
    assert check["warnings"] == []  # every pack that reached the bucket was indexed before giving up
    again = cli.json("backup", str(src))
    total = sum(p.stat().st_size for p in src.iterdir())
    assert again["bytes_added"] < total  # ... and is reused
    assert cli.json("check", "--read-data")["ok"]


@pytest.mark.slow
def test_append_only_credentials_back_up_and_restore_but_not_forget(moto_s3, fault_proxy, bucket_name,
                                                                     tmp_path) -> None:
    cli = S3Cli(tmp_path, moto_s3.url, bucket_name)
    assert cli.run("init").returncode == 0  # an administrator creates the repository
    cli.endpoint(fault_proxy.url)
    fault_proxy.add("deny", method="DELETE")  # the host's credentials may not delete
    src = tmp_path / "src"
    write(src / "a.txt", b"first\n")
    first = cli.json("backup", str(src))
    write(src / "a.txt", b"second\n")
    second = cli.json("backup", str(src))
    assert second["parent"] == first["snapshot_id"]
    restored = cli.run("restore", first["snapshot_id"], "--target", str(tmp_path / "out"))
    assert restored.returncode == 0, restored.stderr
    assert (tmp_path / "out" / src.relative_to("/") / "a.txt").read_bytes() == b"first\n"
    assert cli.json("check", "--read-data")["ok"]
    assert cli.json("forget", "--keep-last", "1", "--dry-run")["forget"] == [first["snapshot_id"]]
    # what only reads (or only says what it would do) works as well, with shared locks
    assert cli.json("forget", first["snapshot_id"], "--dry-run")["forget"] == [first["snapshot_id"]]
    assert cli.json("prune", "--dry-run", "--retry-lock", "5s")["dry_run"]
    assert cli.json("check", "--read-data-subset", "1/2")["ok"]
    assert [s["snapshot"] for s in cli.json("find", "a.txt")] == [first["snapshot_id"], second["snapshot_id"]]
    diff = cli.run("diff", first["snapshot_id"], second["snapshot_id"], "--limit-download", "4096")
    assert diff.returncode == 0 and "a.txt" in diff.stdout, diff.stderr
    for args in (("forget", "--keep-last", "1"), ("forget", first["snapshot_id"]), ("prune",),
                 ("repair", "index")):
        done = cli.run(*args)
        assert done.returncode == 5
        assert "need credentials that may delete" in one_line_error(done)
    assert len(cli.json("snapshots")) == 2
    assert fault_proxy.count("DELETE", 204) == 0 and fault_proxy.count("DELETE", 403) > 0
    cli.endpoint(moto_s3.url)  # full credentials: forget works and clears the locks left behind
    assert cli.json("forget", "--keep-last", "1", "--prune")["forget"] == [first["snapshot_id"]]


@pytest.mark.slow
def test_limit_upload_and_download_hold_the_rate(moto_s3, bucket_name, tmp_path) -> None:
    cli = S3Cli(tmp_path, moto_s3.url, bucket_name)
    assert cli.run("init").returncode == 0
    src = big_tree(tmp_path / "src", files=1, size=3 * MiB)
    started = time.monotonic()
    summary = cli.json("backup", str(src), "--limit-upload", "1024")
    elapsed = time.monotonic() - started
    assert elapsed >= (summary["bytes_stored"] - 1024 * 1024) / (1024 * 1024)  # one second of burst
    started = time.monotonic()
    done = cli.run("restore", "latest", "--target", str(tmp_path / "out"), "--limit-download", "1024")
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started >= (summary["bytes_stored"] - 1024 * 1024) / (1024 * 1024)



def test_the_daemon_backs_up_its_configured_paths_to_s3(moto_s3, bucket_name, tmp_path) -> None:
    cli = S3Cli(tmp_path, moto_s3.url, bucket_name)
    src = tmp_path / "srv"
    write(src / "app.conf", b"listen 80\n")
    for args in (("init",), ("register",), ("path", "add", str(src)), ("run", "--once")):
        done = cli.run(*args)
        assert done.returncode == 0, (args, done.stderr)
    snaps = cli.json("snapshots")
    assert len(snaps) == 1 and snaps[0]["paths"] == [str(src)]
