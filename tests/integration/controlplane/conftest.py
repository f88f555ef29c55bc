"""The ``control_plane`` fixture: the same contract tests against every implementation.

- ``embedded``: :class:`EmbeddedControlPlane` on a fresh SQLite file;
- ``http``: :class:`HttpControlPlane` (AK/SK) against a real ``cbr-agent server`` subprocess shared by
  the module (tests use fresh agent ids, and scope list calls to them with ``agent_ids=``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cbr_agent.controlplane.embedded import EmbeddedControlPlane


@pytest.fixture(params=["embedded", "http"])
def control_plane(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    if request.param == "embedded":
        plane: Any = EmbeddedControlPlane(tmp_path / "cp.db", "contract-project")
    else:
        server = request.getfixturevalue("cp_server_module")
        plane = server.client(max_attempts=1, timeout=10.0)
    try:
        yield plane
    finally:
        plane.close()
