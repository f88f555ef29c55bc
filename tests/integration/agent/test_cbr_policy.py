"""A CBR policy bound to the agent's vault runs on the host from its cached copy: it fires (an injected
one-second schedule), its retention forgets the oldest automatic backups and reports them, and the
backups it makes while the control plane is down are reported when the control plane is back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from huaweicloudsdkcbr.v1 import (
    AssociateVaultPolicyRequest,
    CreatePolicyRequest,
    ListBackupsRequest,
    PolicyCreate,
    PolicyCreateReq,
    PolicyoODCreate,
    PolicyTriggerPropertiesReq,
    PolicyTriggerReq,
    VaultAssociate,
)

from tests.integration.agent.conftest import wait_for
from tests.integration.agent.test_cbr_flow import file_vault, prepared_host, snapshots
from tests.integration.controlplane.test_server_sdk import sdk_client

pytestmark = [pytest.mark.filterwarnings("ignore:Unable to convert string to date")]


def auto_backups(sdk: Any, agent_id: str) -> list[Any]:
    return [
        b
        for b in sdk.list_backups(ListBackupsRequest(resource_id=agent_id)).backups
        if b.extend_info.auto_trigger
    ]


def test_policy_fires_keeps_max_backups_and_survives_an_outage(
    cp_server: Any, agent_host_factory: Any, tmp_path: Path
) -> None:
    sdk = sdk_client(cp_server)
    host, agent_id, _ = prepared_host(
        agent_host_factory, cp_server, tmp_path, "policy", CBR_AGENT_TEST_POLICY_SECONDS="1"
    )
    vault = file_vault(sdk, agent_id)
    policy = sdk.create_policy(
        CreatePolicyRequest(
            body=PolicyCreateReq(
                policy=PolicyCreate(
                    name="every-day",
                    operation_type="backup",
                    operation_definition=PolicyoODCreate(max_backups=2),
                    trigger=PolicyTriggerReq(
                        properties=PolicyTriggerPropertiesReq(
                            pattern=["FREQ=DAILY;INTERVAL=1;BYHOUR=3;BYMINUTE=00"]
                        )
                    ),
                )
            )
        )
    ).policy
    sdk.associate_vault_policy(
        AssociateVaultPolicyRequest(vault_id=vault.id, body=VaultAssociate(policy_id=policy.id))
    )
    host.start()

    def forgot_some() -> bool:
        ledger = host.state_json("policy-backups.json")
        return bool(ledger.get("last_prune"))  # retention ran (and pruned, once a day)

    wait_for(forgot_some, 40, "retention removed a policy backup")
    wait_for(lambda: len(auto_backups(sdk, agent_id)) == 2, 20, "two automatic backups left on the server")
    kept = auto_backups(sdk, agent_id)
    assert {b.scheduled_operation_id for b in kept} == {policy.id}
    assert all(b.vault_id == vault.id for b in kept)
    in_repo = set(snapshots(host))
    ledger_ids = {b["snapshot_id"] for b in host.state_json("policy-backups.json")["backups"]}
    assert len(ledger_ids) <= 3 and ledger_ids <= in_repo

    cp_server.stop()
    before = host.state_json("policy-backups.json").get("last_run")
    outbox = host.state / "outbox"
    wait_for(
        lambda: (
            host.state_json("policy-backups.json").get("last_run") != before
            and any(outbox.glob("*-backup.json"))
        ),
        20,
        "a policy backup while the control plane is down",
    )
    queued = [
        json.loads(p.read_text())["payload"]["backup"]["snapshot_id"] for p in outbox.glob("*-backup.json")
    ]
    cp_server.start()
    wait_for(lambda: not any(outbox.glob("*.json")) or None, 60, "the outbox drained")
    reported = {
        b.extend_info.snapshot_id
        for b in sdk.list_backups(ListBackupsRequest(resource_id=agent_id)).backups
    }
    forgotten = set(queued) - set(snapshots(host))
    assert set(queued) - forgotten <= reported
