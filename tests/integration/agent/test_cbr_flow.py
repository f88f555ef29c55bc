"""The CBR flow end to end: the official SDK against a real ``cbr-agent server``, and real daemons
(subprocesses) doing the work: a backup, a restore, a delete, an agent offline while work waits, and
an agent killed in the middle of a task whose lease then lapses and is re-offered."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from huaweicloudsdkcbr.v1 import (
    BackupRestore,
    BackupRestoreReq,
    CheckpointParam,
    CreateCheckpointRequest,
    CreateVaultRequest,
    DeleteBackupRequest,
    DeleteVaultRequest,
    ListBackupsRequest,
    ListOpLogsRequest,
    ResourceCreate,
    RestoreBackupRequest,
    RestoreDetails,
    ShowCheckpointRequest,
    VaultBackup,
    VaultBackupReq,
    VaultCreate,
    VaultCreateReq,
)
from huaweicloudsdkcbr.v1 import BillingCreate as Billing

from tests.integration.agent.conftest import AgentHost, server_env, wait_for
from tests.integration.controlplane.test_server_sdk import sdk_client

pytestmark = [pytest.mark.filterwarnings("ignore:Unable to convert string to date")]

#: a 60 s heartbeat (the default): work must reach the agent through the long poll, not the heartbeat
TASK_ENV = {
    "CBR_AGENT_TASK_LEASE_SECONDS": "2",
    "CBR_AGENT_TASK_PROGRESS_SECONDS": "0.5",
    "CBR_AGENT_PASSWORD": "flow-test-password",
}


def make_tree(root: Path) -> Path:
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_text("alpha\n")
    (root / "sub" / "b.bin").write_bytes(bytes(range(256)) * 64)
    return root


def prepared_host(
    factory: Any, server: Any, tmp_path: Path, name: str, **env: str
) -> tuple[AgentHost, str, Path]:
    host = factory(env={**server_env(server, heartbeat=60), **TASK_ENV, **env}, name=name)
    data = make_tree(tmp_path / f"{name}-data")
    assert host.cli("init").returncode == 0, host.cli("init").stderr
    registered = host.cli("register")
    assert registered.returncode == 0, registered.stderr
    added = host.cli("path", "add", str(data))
    assert added.returncode == 0, added.stderr
    agent_id = host.agent_id()
    assert agent_id
    return host, agent_id, data


def file_vault(sdk: Any, agent_id: str) -> Any:
    return sdk.create_vault(
        CreateVaultRequest(
            body=VaultCreateReq(
                vault=VaultCreate(
                    name="flow",
                    billing=Billing(
                        object_type="file",
                        protect_type="backup",
                        consistent_level="crash_consistent",
                        size=10,
                    ),
                    resources=[ResourceCreate(id=agent_id, type="OS::Native::Server")],
                )
            )
        )
    ).vault


def checkpoint(sdk: Any, vault_id: str, agent_id: str) -> Any:
    return sdk.create_checkpoint(
        CreateCheckpointRequest(
            body=VaultBackupReq(
                checkpoint=VaultBackup(
                    vault_id=vault_id, parameters=CheckpointParam(resources=[agent_id], name="flow_now")
                )
            )
        )
    ).checkpoint


def status_of(sdk: Any, checkpoint_id: str) -> str:
    return sdk.show_checkpoint(ShowCheckpointRequest(checkpoint_id=checkpoint_id)).checkpoint.status


def one_log(sdk: Any, kind: str, agent_id: str) -> Any:
    logs = sdk.list_op_logs(ListOpLogsRequest(operation_type=kind, resource_id=agent_id)).operation_logs
    return logs[0] if logs else None


def snapshots(host: AgentHost) -> list[str]:
    listed = host.cli("snapshots", "--json")
    assert listed.returncode == 0, listed.stderr
    return [s["id"] for s in json.loads(listed.stdout)]


def test_backup_restore_delete_through_the_sdk(
    cp_server: Any, agent_host_factory: Any, tmp_path: Path
) -> None:
    sdk = sdk_client(cp_server)
    host, agent_id, data = prepared_host(agent_host_factory, cp_server, tmp_path, "flow")
    host.start()
    vault = file_vault(sdk, agent_id)
    wait_for(lambda: (host.state / "cbr-config.json").exists(), 10, "the agent saw its vault")

    asked = time.monotonic()
    cp = checkpoint(sdk, vault.id, agent_id)
    assert cp.status == "protecting"
    wait_for(lambda: (one_log(sdk, "backup", agent_id) or Any).status != "waiting", 5, "the backup started")
    started_after = time.monotonic() - asked
    wait_for(lambda: status_of(sdk, cp.id) == "available", 30, "the checkpoint is available")
    assert started_after < 4.0, f"the backup started {started_after:.1f} s after the request"
    backup = sdk.list_backups(ListBackupsRequest(checkpoint_id=cp.id)).backups[0]
    assert (backup.resource_id, backup.resource_type, backup.vault_id) == (
        agent_id,
        "OS::Native::Server",
        vault.id,
    )
    assert backup.extend_info.snapshot_id in snapshots(host)
    log = one_log(sdk, "backup", agent_id)
    assert log.status == "success" and log.extra_info.common.progress == 100

    target = tmp_path / "restored"
    sdk.restore_backup(
        RestoreBackupRequest(
            backup_id=backup.id,
            body=BackupRestoreReq(
                restore=BackupRestore(details=RestoreDetails(destination_path=str(target)))
            ),
        )
    )
    wait_for(
        lambda: (one_log(sdk, "restore", agent_id) or Any).status == "success", 30, "the restore ended"
    )
    restored = target / str(data).lstrip("/")
    assert (restored / "a.txt").read_text() == "alpha\n"
    assert (restored / "sub" / "b.bin").read_bytes() == (data / "sub" / "b.bin").read_bytes()

    only = tmp_path / "only-a"  # the extension details.paths: just that file
    cp_server.client().cbr_call(
        "POST",
        ["backups", backup.id, "restore"],
        payload={"restore": {"details": {"destination_path": str(only), "paths": [str(data / "a.txt")]}}},
    )
    wait_for(
        lambda: (
            len(
                [
                    log
                    for log in sdk.list_op_logs(
                        ListOpLogsRequest(operation_type="restore", status="success")
                    ).operation_logs
                ]
            )
            == 2
        ),
        30,
        "the partial restore",
    )
    assert (only / str(data).lstrip("/") / "a.txt").exists()
    assert not (only / str(data).lstrip("/") / "sub").exists()

    sdk.restore_backup(
        RestoreBackupRequest(
            backup_id=backup.id,
            body=BackupRestoreReq(
                restore=BackupRestore(details=RestoreDetails(destination_path=str(data / "sub")))
            ),
        )
    )  # inside the backed-up path, not empty
    wait_for(lambda: (one_log(sdk, "restore", agent_id) or Any).status == "failed", 30, "the refusal")
    assert "not empty" in one_log(sdk, "restore", agent_id).error_info.message

    sdk.delete_backup(DeleteBackupRequest(backup_id=backup.id))
    wait_for(lambda: sdk.list_backups(ListBackupsRequest(resource_id=agent_id)).count == 0, 30, "deleted")
    assert backup.extend_info.snapshot_id not in snapshots(host)
    assert one_log(sdk, "delete", agent_id).status == "success"

    second = checkpoint(sdk, vault.id, agent_id)
    wait_for(lambda: status_of(sdk, second.id) == "available", 30, "the second checkpoint")
    kept = sdk.list_backups(ListBackupsRequest(checkpoint_id=second.id)).backups[0].extend_info.snapshot_id
    sdk.delete_vault(DeleteVaultRequest(vault_id=vault.id))  # deletes the vault's backups too
    wait_for(
        lambda: (one_log(sdk, "vault_delete", agent_id) or Any).status == "success", 30, "vault delete"
    )
    assert kept not in snapshots(host)
    assert sdk.list_backups(ListBackupsRequest(resource_id=agent_id)).count == 0


def test_offline_agent_takes_waiting_work_when_it_comes_back(
    cp_server: Any, agent_host_factory: Any, tmp_path: Path
) -> None:
    sdk = sdk_client(cp_server)
    host, agent_id, _ = prepared_host(agent_host_factory, cp_server, tmp_path, "offline")
    vault = file_vault(sdk, agent_id)
    cp = checkpoint(sdk, vault.id, agent_id)
    time.sleep(0.5)
    assert status_of(sdk, cp.id) == "protecting" and one_log(sdk, "backup", agent_id).status == "waiting"
    host.start()
    wait_for(lambda: status_of(sdk, cp.id) == "available", 30, "the checkpoint is available")


def test_agent_killed_mid_task_the_lease_lapses_and_the_task_is_run_again(
    cp_server: Any, agent_host_factory: Any, tmp_path: Path
) -> None:
    sdk = sdk_client(cp_server)
    host, agent_id, _ = prepared_host(
        agent_host_factory, cp_server, tmp_path, "killed", CBR_AGENT_TEST_TASK_DELAY="30"
    )
    vault = file_vault(sdk, agent_id)
    host.start()
    cp = checkpoint(sdk, vault.id, agent_id)
    wait_for(lambda: (one_log(sdk, "backup", agent_id) or Any).status == "running", 10, "claimed")
    status = json.loads(host.cli("status", "--json").stdout)
    assert (
        status["task"]["operation_type"] == "backup"
        and status["task"]["id"] == one_log(sdk, "backup", agent_id).id
    )
    assert "backup" in host.cli("status").stdout.split("task:")[1].splitlines()[0]
    log = one_log(sdk, "backup", agent_id)
    first = cp_server.client().cbr_call("GET", ["operation-logs", log.id])["operation_log"]
    host.kill()
    assert first["extra_info"]["lease"]["attempts"] == 1
    host.start(env={"CBR_AGENT_TEST_TASK_DELAY": "0"})
    wait_for(lambda: status_of(sdk, cp.id) == "available", 30, "the re-offered task ran")
    raw = cp_server.client().cbr_call("GET", ["operation-logs", log.id])["operation_log"]
    assert raw["extra_info"]["lease"]["attempts"] == 2
    assert raw["extra_info"]["lease"]["owner"] != first["extra_info"]["lease"]["owner"]
    assert sdk.list_backups(ListBackupsRequest(checkpoint_id=cp.id)).count == 1


def test_an_idle_agent_polls_once_per_wait_and_work_ends_the_wait(
    cp_server: Any, agent_host_factory: Any, tmp_path: Path
) -> None:
    sdk = sdk_client(cp_server)
    host, agent_id, _ = prepared_host(
        agent_host_factory, cp_server, tmp_path, "idle", CBR_AGENT_TASK_POLL_WAIT="3"
    )
    vault = file_vault(sdk, agent_id)
    host.start()
    wait_for(lambda: (host.state / "cbr-config.json").exists(), 10, "the agent saw its vault")

    def polls() -> int:
        return sum(f"/agents/{agent_id}/tasks " in line for line in cp_server.log_text().splitlines())

    time.sleep(1.0)
    before = polls()
    time.sleep(6.0)
    idle = polls() - before
    assert 1 <= idle <= 3, f"{idle} polls in 6 s with a 3 s wait"
    asked = time.monotonic()
    cp = checkpoint(sdk, vault.id, agent_id)
    wait_for(lambda: (one_log(sdk, "backup", agent_id) or Any).status != "waiting", 5, "the backup started")
    assert time.monotonic() - asked < 2.5  # the held poll answered, it did not wait out its 3 s
    wait_for(lambda: status_of(sdk, cp.id) == "available", 30, "the checkpoint is available")
