"""Whatever JSON a caller sends to a CBR route, the answer is a success or a 4xx ApiError with a
``BackupService.*`` code: never an internal error (Hypothesis, on the real store in-process)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cbr_agent.api.models import AgentRegistration
from cbr_agent.controlplane.cbr_routes import ROUTES, dispatch
from cbr_agent.controlplane.embedded import EmbeddedControlPlane
from cbr_agent.errors import ApiError

_DIR = tempfile.mkdtemp(prefix="cbr-prop-")
CP = EmbeddedControlPlane(Path(_DIR) / "cp.db", "proj")
CP.register_agent(AgentRegistration("agent-1", "h", "10.0.0.1", "linux"))
VAULT = CP.cbr_call(
    "POST",
    ["vaults"],
    payload={
        "vault": {
            "name": "v",
            "billing": {"object_type": "file", "size": 10},
            "resources": [{"id": "agent-1", "type": "OS::Native::Server"}],
        }
    },
)["vault"]["id"]
BACKUP = CP.cbr_call("POST", ["agents", "agent-1", "backups"], payload={"backup": {"snapshot_id": "s1"}})[
    "backup"
]["id"]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False),
    st.text(max_size=20),
    st.sampled_from(
        [
            "agent-1",
            "file",
            "backup",
            "OS::Native::Server",
            "FREQ=DAILY;BYHOUR=1;BYMINUTE=0",
            "/srv/x",
            "../x",
            VAULT,
            BACKUP,
        ]
    ),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(
            st.sampled_from(
                [
                    "vault",
                    "policy",
                    "checkpoint",
                    "restore",
                    "details",
                    "billing",
                    "resources",
                    "id",
                    "type",
                    "name",
                    "size",
                    "object_type",
                    "operation_type",
                    "operation_definition",
                    "trigger",
                    "properties",
                    "pattern",
                    "max_backups",
                    "timezone",
                    "vault_id",
                    "parameters",
                    "destination_path",
                    "paths",
                    "policy_id",
                    "resource_ids",
                    "owner",
                    "status",
                    "backup",
                    "snapshot_id",
                    "progress",
                    "lease_seconds",
                    "snapshot_ids",
                    "created_at",
                    "error",
                    "result",
                ]
            ),
            inner,
            max_size=5,
        ),
    ),
    max_leaves=20,
)

JSON_ROUTES = [r for r in ROUTES if r.with_json]
IDS = st.sampled_from(["agent-1", "x", "00000000-0000-0000-0000-000000000000", "bad id", "", VAULT, BACKUP])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(JSON_ROUTES), json_values, IDS)
def test_any_body_is_answered_not_crashed(route: Any, body: Any, ident: str) -> None:
    path = route.path
    for name in ("vault_id", "policy_id", "backup_id", "task_id", "checkpoint_id", "operation_log_id"):
        path = path.replace("{" + name + "}", ident or "x")
    path = path.replace("{agent_id}", "agent-1")
    try:
        status, _ = dispatch(CP.store, "proj", route.method, path, [], body)
    except ApiError as exc:
        assert 400 <= exc.status < 500, exc
        assert exc.error_code.startswith("BackupService."), exc
    else:
        assert status in (200, 202, 204)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(
                [
                    "limit",
                    "offset",
                    "status",
                    "sort",
                    "start_time",
                    "end_time",
                    "operation_type",
                    "wait",
                    "name",
                ]
            ),
            st.text(max_size=12),
        ),
        max_size=4,
    ),
    st.sampled_from(["/backups", "/operation-logs", "/vaults", "/policies", "/agents/agent-1/tasks"]),
)
def test_any_query_is_answered_not_crashed(query: list[tuple[str, str]], path: str) -> None:
    query = [(k, "0") if k == "wait" else (k, v) for k, v in query]
    try:
        dispatch(CP.store, "proj", "GET", path, query, None)
    except ApiError as exc:
        assert exc.status == 400 and exc.error_code.startswith("BackupService."), exc
