"""The ``control_plane`` fixture: the same contract tests against every implementation.

- ``embedded``: :class:`EmbeddedControlPlane` on a fresh SQLite file;
- ``http``: :class:`HttpControlPlane` (AK/SK) against a real ``cbr-agent server`` subprocess shared by
  the module (tests use fresh agent ids, and scope list calls to them with ``agent_ids=``);
- ``embedded-postgresql``, ``http-postgresql``: the same on PostgreSQL (issue 13), a fresh database of
  the session's temporary cluster (skipped, with the reason, where PostgreSQL is not installed).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cbr_agent.controlplane.embedded import EmbeddedControlPlane


@pytest.fixture(params=["embedded", "http", "embedded-postgresql", "http-postgresql"])
def control_plane(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    if request.param == "embedded":
        plane: Any = EmbeddedControlPlane(tmp_path / "cp.db", "contract-project")
    elif request.param == "embedded-postgresql":
        plane = EmbeddedControlPlane(request.getfixturevalue("postgres").new_database(), "contract-project")
    else:
        fixture = "cp_server_module_pg" if request.param.endswith("postgresql") else "cp_server_module"
        server = request.getfixturevalue(fixture)
        plane = server.client(max_attempts=1, timeout=10.0)
    try:
        yield plane
    finally:
        plane.close()
