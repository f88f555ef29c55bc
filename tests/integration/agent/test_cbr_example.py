"""examples/cbr_sdk_flow.py (the README's walk-through) runs as written against a real server and a
real daemon."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.integration.agent.test_cbr_flow import prepared_host

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "cbr_sdk_flow.py"


def test_the_sdk_example_runs(cp_server: Any, agent_host_factory: Any, tmp_path: Path) -> None:
    host, agent_id, data = prepared_host(agent_host_factory, cp_server, tmp_path, "example")
    host.start()
    target = tmp_path / "restore-here"
    env = {
        "CBR_ENDPOINT": cp_server.url,
        "CBR_PROJECT_ID": cp_server.project_id,
        "CBR_AK": cp_server.ak,
        "CBR_SK": cp_server.sk,
        "CBR_AGENT_ID": agent_id,
        "CBR_RESTORE_TO": str(target),
        "PYTHONWARNINGS": "ignore",
    }
    done = subprocess.run(
        [sys.executable, str(EXAMPLE)], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "restore success" in done.stdout and "backup deleted" in done.stdout
    assert (target / str(data).lstrip("/") / "a.txt").read_text() == "alpha\n"
