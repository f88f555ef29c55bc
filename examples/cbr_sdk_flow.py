"""The CBR file-backup flow with the official SDK (huaweicloudsdkcbr), against `cbr-agent server`
or any CBR endpoint: a vault holding an agent, a daily policy, a backup now, a restore, a delete.

    CBR_ENDPOINT=http://127.0.0.1:8080 CBR_PROJECT_ID=... CBR_AK=... CBR_SK=... \
    CBR_AGENT_ID=... CBR_RESTORE_TO=/srv/restore python3 examples/cbr_sdk_flow.py

The agent (`cbr-agent run` on the host) does the work; this script only asks and waits.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import Any

from huaweicloudsdkcbr.v1 import (
    AssociateVaultPolicyRequest,
    BackupRestore,
    BackupRestoreReq,
    BillingCreate,
    CbrClient,
    CheckpointParam,
    CreateCheckpointRequest,
    CreatePolicyRequest,
    CreateVaultRequest,
    DeleteBackupRequest,
    ListBackupsRequest,
    ListOpLogsRequest,
    PolicyCreate,
    PolicyCreateReq,
    PolicyoODCreate,
    PolicyTriggerPropertiesReq,
    PolicyTriggerReq,
    ResourceCreate,
    RestoreBackupRequest,
    RestoreDetails,
    ShowCheckpointRequest,
    VaultAssociate,
    VaultBackup,
    VaultBackupReq,
    VaultCreate,
    VaultCreateReq,
)
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.http.http_config import HttpConfig


def wait(what: str, done: Callable[[], Any], timeout: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = done()
        if value:
            return value
        time.sleep(0.5)
    sys.exit(f"timed out waiting for {what}")


def main() -> None:
    env = os.environ
    creds = BasicCredentials(env["CBR_AK"], env["CBR_SK"], env["CBR_PROJECT_ID"])
    cbr = CbrClient.new_builder().with_http_config(HttpConfig.get_default_config()) \
        .with_credentials(creds).with_endpoint(env["CBR_ENDPOINT"]).build()
    agent_id = env["CBR_AGENT_ID"]

    # 1. a file vault holding the agent, and a policy: every day at 02:00 UTC, keep 7 backups
    vault = cbr.create_vault(CreateVaultRequest(body=VaultCreateReq(vault=VaultCreate(
        name="files", billing=BillingCreate(object_type="file", protect_type="backup",
                                            consistent_level="crash_consistent", size=100),
        resources=[ResourceCreate(id=agent_id, type="OS::Native::Server")])))).vault
    policy = cbr.create_policy(CreatePolicyRequest(body=PolicyCreateReq(policy=PolicyCreate(
        name="daily", operation_type="backup", operation_definition=PolicyoODCreate(max_backups=7),
        trigger=PolicyTriggerReq(properties=PolicyTriggerPropertiesReq(
            pattern=["FREQ=DAILY;INTERVAL=1;BYHOUR=2;BYMINUTE=00"])))))).policy
    cbr.associate_vault_policy(AssociateVaultPolicyRequest(vault_id=vault.id, body=VaultAssociate(
        policy_id=policy.id)))
    print(f"vault {vault.id} with policy {policy.id}")

    # 2. back up now, and wait for the restore point
    checkpoint = cbr.create_checkpoint(CreateCheckpointRequest(body=VaultBackupReq(checkpoint=VaultBackup(
        vault_id=vault.id, parameters=CheckpointParam(name="now"))))).checkpoint
    wait("the backup", lambda: cbr.show_checkpoint(ShowCheckpointRequest(
        checkpoint_id=checkpoint.id)).checkpoint.status in ("available", "error"))
    backup = cbr.list_backups(ListBackupsRequest(checkpoint_id=checkpoint.id)).backups[0]
    print(f"backup {backup.id}: snapshot {backup.extend_info.snapshot_id} of {backup.resource_name}")

    # 3. restore it below another directory, and follow the task
    cbr.restore_backup(RestoreBackupRequest(backup_id=backup.id, body=BackupRestoreReq(restore=BackupRestore(
        details=RestoreDetails(destination_path=env["CBR_RESTORE_TO"])))))

    def restore_log() -> Any:
        logs = cbr.list_op_logs(ListOpLogsRequest(operation_type="restore", resource_id=agent_id))
        log = logs.operation_logs[0] if logs.operation_logs else None
        return log if log is not None and log.status in ("success", "failed", "timeout") else None

    log = wait("the restore", restore_log)
    print(f"restore {log.status} {log.error_info.message}".rstrip())

    # 4. delete the backup (the agent forgets the snapshot)
    cbr.delete_backup(DeleteBackupRequest(backup_id=backup.id))
    wait("the delete", lambda: cbr.list_backups(ListBackupsRequest(checkpoint_id=checkpoint.id)).count == 0)
    print("backup deleted")


if __name__ == "__main__":
    main()
