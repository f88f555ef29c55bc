"""The official CBR SDK drives vaults, policies, checkpoints, backups and operation logs on a real
``cbr-agent server``; an agent's side (claim, progress, result) is played with our own client here
(tests/integration/agent/test_cbr_flow.py runs real daemons)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from huaweicloudsdkcbr.v1 import (
    AddVaultResourceRequest,
    AssociateVaultPolicyRequest,
    BackupRestore,
    BackupRestoreReq,
    BillingCreate,
    CheckpointParam,
    CreateCheckpointRequest,
    CreatePolicyRequest,
    CreateVaultRequest,
    DeleteBackupRequest,
    DeletePolicyRequest,
    DeleteVaultRequest,
    DisassociateVaultPolicyRequest,
    ListBackupsRequest,
    ListOpLogsRequest,
    ListPoliciesRequest,
    ListVaultRequest,
    PolicyCreate,
    PolicyCreateReq,
    PolicyoODCreate,
    PolicyTriggerPropertiesReq,
    PolicyTriggerReq,
    PolicyUpdate,
    PolicyUpdateReq,
    RemoveVaultResourceRequest,
    ResourceCreate,
    RestoreBackupRequest,
    RestoreDetails,
    ShowBackupRequest,
    ShowCheckpointRequest,
    ShowOpLogRequest,
    ShowPolicyRequest,
    ShowVaultRequest,
    UpdatePolicyRequest,
    VaultAddResourceReq,
    VaultAssociate,
    VaultBackup,
    VaultBackupReq,
    VaultCreate,
    VaultCreateReq,
    VaultDissociate,
    VaultRemoveResourceReq,
)
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException

from cbr_agent.api.models import AgentRegistration
from tests.integration.controlplane.test_server_sdk import sdk_client


@pytest.fixture(params=["sqlite", "postgresql"])
def cp_server(request: pytest.FixtureRequest, cp_server_factory: Any) -> Any:
    """The whole SDK flow against a server on each store (issue 13)."""
    if request.param == "sqlite":
        return cp_server_factory()
    return cp_server_factory(db=request.getfixturevalue("postgres").new_database())

pytestmark = [
    pytest.mark.filterwarnings("ignore:Unable to convert string to date"),
    pytest.mark.filterwarnings("ignore:Unverified HTTPS request"),
]

AGENT = "OS::Native::Server"


def register(server: Any, host: str) -> str:
    agent_id = str(uuid.uuid4())
    with server.client(max_attempts=1) as client:
        client.register_agent(AgentRegistration(agent_id, host, "10.0.0.9", "linux"))
    return agent_id


def vault_request(name: str, agents: list[str], size: int = 100, object_type: str = "file") -> Any:
    return CreateVaultRequest(
        body=VaultCreateReq(
            vault=VaultCreate(
                name=name,
                billing=BillingCreate(
                    object_type=object_type,
                    protect_type="backup",
                    consistent_level="crash_consistent",
                    size=size,
                ),
                resources=[ResourceCreate(id=a, type=AGENT) for a in agents],
            )
        )
    )


def error_of(call: Any) -> tuple[int, str]:
    with pytest.raises(ClientRequestException) as exc_info:
        call()
    return exc_info.value.status_code, exc_info.value.error_code


def play_agent(server: Any, agent_id: str, *, snapshot: str, status: str = "success") -> dict[str, Any]:
    """Poll, claim, report progress and end the first task, as a daemon would."""
    with server.client(max_attempts=1) as client:
        polled = client.cbr_call("GET", ["agents", agent_id, "tasks"], query=[("wait", "2")])
        task = polled["tasks"][0]
        path = ["agents", agent_id, "tasks", task["id"]]
        client.cbr_call("POST", [*path, "claim"], payload={"owner": "o1", "lease_seconds": 30})
        client.cbr_call("POST", [*path, "progress"], payload={"owner": "o1", "progress": 50})
        body: dict[str, Any] = {"owner": "o1", "status": status, "result": {"snapshot_id": snapshot}}
        if status == "success" and task["operation_type"] == "backup":
            body["backup"] = {"snapshot_id": snapshot, "size_bytes": 5000, "added_bytes": 1000}
        if status == "failed":
            body["error"] = {"code": "BackupService.9910", "message": "disk on fire"}
        client.cbr_call("POST", [*path, "result"], payload=body)
        return task


def test_vault_policy_checkpoint_backup_restore_delete(cp_server: Any) -> None:
    sdk = sdk_client(cp_server)
    a1, a2 = register(cp_server, "host-one"), register(cp_server, "host-two")

    vault = sdk.create_vault(vault_request("files-1", [a1])).vault
    assert vault.billing.object_type == "file" and [r.id for r in vault.resources] == [a1]
    assert vault.resources[0].name == "host-one" and vault.resources[0].type == AGENT
    added = sdk.add_vault_resource(
        AddVaultResourceRequest(
            vault_id=vault.id, body=VaultAddResourceReq(resources=[ResourceCreate(id=a2, type=AGENT)])
        )
    )
    assert added.add_resource_ids == [a2]
    assert sdk.show_vault(ShowVaultRequest(vault_id=vault.id)).vault.name == "files-1"
    assert [v.id for v in sdk.list_vault(ListVaultRequest()).vaults] == [vault.id]

    policy = sdk.create_policy(
        CreatePolicyRequest(
            body=PolicyCreateReq(
                policy=PolicyCreate(
                    name="nightly",
                    operation_type="backup",
                    enabled=True,
                    operation_definition=PolicyoODCreate(max_backups=5),
                    trigger=PolicyTriggerReq(
                        properties=PolicyTriggerPropertiesReq(
                            pattern=["FREQ=DAILY;INTERVAL=1;BYHOUR=2;BYMINUTE=30"]
                        )
                    ),
                )
            )
        )
    ).policy
    assert policy.trigger.type == "time" and policy.operation_definition.max_backups == 5
    sdk.associate_vault_policy(
        AssociateVaultPolicyRequest(vault_id=vault.id, body=VaultAssociate(policy_id=policy.id))
    )
    shown = sdk.show_policy(ShowPolicyRequest(policy_id=policy.id)).policy
    assert [v.vault_id for v in shown.associated_vaults] == [vault.id]
    updated = sdk.update_policy(
        UpdatePolicyRequest(
            policy_id=policy.id, body=PolicyUpdateReq(policy=PolicyUpdate(name="nightly-2"))
        )
    ).policy
    assert updated.name == "nightly-2"
    assert sdk.list_policies(ListPoliciesRequest()).count == 1

    checkpoint = sdk.create_checkpoint(
        CreateCheckpointRequest(
            body=VaultBackupReq(
                checkpoint=VaultBackup(
                    vault_id=vault.id, parameters=CheckpointParam(name="now_1", resources=[a1])
                )
            )
        )
    ).checkpoint
    assert checkpoint.status == "protecting" and [r.id for r in checkpoint.vault.resources] == [a1]
    logs = sdk.list_op_logs(ListOpLogsRequest(operation_type="backup", resource_id=a1))
    assert logs.count == 1 and logs.operation_logs[0].status == "waiting"

    play_agent(cp_server, a1, snapshot="snap-1")
    assert (
        sdk.show_checkpoint(ShowCheckpointRequest(checkpoint_id=checkpoint.id)).checkpoint.status
        == "available"
    )
    log = sdk.show_op_log(ShowOpLogRequest(operation_log_id=logs.operation_logs[0].id)).operation_log
    assert log.status == "success" and log.extra_info.common.progress == 100
    backups = sdk.list_backups(ListBackupsRequest(checkpoint_id=checkpoint.id)).backups
    assert len(backups) == 1
    backup = backups[0]
    assert (backup.resource_id, backup.resource_type, backup.resource_name, backup.vault_id) == (
        a1,
        AGENT,
        "host-one",
        vault.id,
    )
    assert backup.extend_info.snapshot_id == "snap-1" and backup.extend_info.auto_trigger is False
    assert backup.name == "now_1"
    assert sdk.show_backup(ShowBackupRequest(backup_id=backup.id)).backup.status == "available"
    assert sdk.list_backups(ListBackupsRequest(resource_id=a2)).count == 0
    assert (
        sdk.list_backups(ListBackupsRequest(status="available", name="now_1", vault_id=vault.id)).count == 1
    )
    assert sdk.list_backups(ListBackupsRequest(status="error")).count == 0
    assert (
        sdk.list_backups(
            ListBackupsRequest(
                start_time="2000-01-01T00:00:00Z",
                end_time="2001-01-01T00:00:00Z",
                sort="created_at:asc",
                limit=5,
                offset=0,
            )
        ).count
        == 0
    )
    assert sdk.list_op_logs(ListOpLogsRequest(status="success", vault_id=vault.id, limit=10)).count == 1

    sdk.restore_backup(
        RestoreBackupRequest(
            backup_id=backup.id,
            body=BackupRestoreReq(
                restore=BackupRestore(details=RestoreDetails(destination_path="/srv/restore-here"))
            ),
        )
    )
    assert sdk.show_backup(ShowBackupRequest(backup_id=backup.id)).backup.status == "restoring"
    task = play_agent(cp_server, a1, snapshot="snap-1")
    assert task["operation_type"] == "restore"
    assert task["parameters"]["destination_path"] == "/srv/restore-here"
    assert sdk.show_backup(ShowBackupRequest(backup_id=backup.id)).backup.status == "available"

    sdk.delete_backup(DeleteBackupRequest(backup_id=backup.id))
    assert sdk.show_backup(ShowBackupRequest(backup_id=backup.id)).backup.status == "deleting"
    task = play_agent(cp_server, a1, snapshot="snap-1")
    assert task["operation_type"] == "delete" and task["parameters"]["snapshot_ids"] == ["snap-1"]
    assert error_of(lambda: sdk.show_backup(ShowBackupRequest(backup_id=backup.id))) == (
        404,
        "BackupService.6200",
    )

    removed = sdk.remove_vault_resource(
        RemoveVaultResourceRequest(vault_id=vault.id, body=VaultRemoveResourceReq(resource_ids=[a2]))
    )
    assert removed.remove_resource_ids == [a2]
    sdk.delete_vault(DeleteVaultRequest(vault_id=vault.id))
    assert error_of(lambda: sdk.show_vault(ShowVaultRequest(vault_id=vault.id))) == (
        404,
        "BackupService.6105",
    )
    kinds = {log.operation_type for log in sdk.list_op_logs(ListOpLogsRequest()).operation_logs}
    assert kinds == {"backup", "restore", "delete", "remove_resource", "vault_delete"}
    other = sdk.create_vault(vault_request("files-2", [a1])).vault
    sdk.associate_vault_policy(
        AssociateVaultPolicyRequest(vault_id=other.id, body=VaultAssociate(policy_id=policy.id))
    )
    dropped = sdk.disassociate_vault_policy(
        DisassociateVaultPolicyRequest(vault_id=other.id, body=VaultDissociate(policy_id=policy.id))
    )
    assert dropped.dissociate_policy.policy_id == policy.id
    assert sdk.list_policies(ListPoliciesRequest(vault_id=other.id)).count == 0
    sdk.delete_policy(DeletePolicyRequest(policy_id=policy.id))
    assert error_of(lambda: sdk.show_policy(ShowPolicyRequest(policy_id=policy.id))) == (
        404,
        "BackupService.6000",
    )


def test_failed_backup_turns_the_checkpoint_error(cp_server: Any) -> None:
    sdk = sdk_client(cp_server)
    agent = register(cp_server, "host-f")
    vault = sdk.create_vault(vault_request("files-f", [agent])).vault
    checkpoint = sdk.create_checkpoint(
        CreateCheckpointRequest(body=VaultBackupReq(checkpoint=VaultBackup(vault_id=vault.id)))
    ).checkpoint
    again = sdk.create_checkpoint(
        CreateCheckpointRequest(body=VaultBackupReq(checkpoint=VaultBackup(vault_id=vault.id)))
    ).checkpoint
    assert [s.id for s in again.vault.skipped_resources] == [agent]
    play_agent(cp_server, agent, snapshot="x", status="failed")
    assert (
        sdk.show_checkpoint(ShowCheckpointRequest(checkpoint_id=checkpoint.id)).checkpoint.status == "error"
    )
    log = sdk.list_op_logs(ListOpLogsRequest(status="failed")).operation_logs[0]
    assert (log.error_info.code, log.error_info.message) == ("BackupService.9910", "disk on fire")


def test_bad_input_and_unknown_ids(cp_server: Any) -> None:
    sdk = sdk_client(cp_server)
    agent = register(cp_server, "host-b")
    assert error_of(lambda: sdk.create_vault(vault_request("v", [agent], size=-5))) == (
        400,
        "BackupService.6101",
    )
    assert error_of(lambda: sdk.create_vault(vault_request("v", [agent], object_type="tape")))[0] == 400
    assert error_of(lambda: sdk.create_vault(vault_request("v", [agent], object_type="disk"))) == (
        400,
        "BackupService.6116",
    )
    assert error_of(lambda: sdk.create_vault(vault_request("v", [str(uuid.uuid4())]))) == (
        400,
        "BackupService.6302",
    )
    sdk.create_vault(vault_request("v", [agent]))
    assert error_of(lambda: sdk.create_vault(vault_request("w", [agent]))) == (400, "BackupService.6103")
    bad_pattern = CreatePolicyRequest(
        body=PolicyCreateReq(
            policy=PolicyCreate(
                name="p",
                operation_type="backup",
                operation_definition=PolicyoODCreate(),
                trigger=PolicyTriggerReq(
                    properties=PolicyTriggerPropertiesReq(pattern=["FREQ=HOURLY;BYMINUTE=0"])
                ),
            )
        )
    )
    assert error_of(lambda: sdk.create_policy(bad_pattern)) == (400, "BackupService.9900")
    missing = str(uuid.uuid4())
    for call, code in [
        (lambda: sdk.show_vault(ShowVaultRequest(vault_id=missing)), "BackupService.6105"),
        (lambda: sdk.show_policy(ShowPolicyRequest(policy_id=missing)), "BackupService.6000"),
        (lambda: sdk.show_backup(ShowBackupRequest(backup_id=missing)), "BackupService.6200"),
        (lambda: sdk.show_checkpoint(ShowCheckpointRequest(checkpoint_id=missing)), "BackupService.6217"),
        (lambda: sdk.show_op_log(ShowOpLogRequest(operation_log_id=missing)), "BackupService.6500"),
        (lambda: sdk.delete_vault(DeleteVaultRequest(vault_id=missing)), "BackupService.6105"),
    ]:
        assert error_of(call) == (404, code)
