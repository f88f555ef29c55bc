"""The real daemon's metrics: a node_exporter textfile and a local port, after a real scheduled backup."""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.integration.agent.conftest import server_env, wait_for
from tests.integration.conftest import free_port

PASSWORD = "metrics test password"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_daemon_exports_backup_and_heartbeat_metrics(cp_server, agent_host_factory, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for i in range(3):
        (data / f"file{i}").write_bytes(b"metrics %d\n" % i * 500)
    textfile = tmp_path / "textfile" / "cbr_agent.prom"
    textfile.parent.mkdir()
    port = free_port()
    host = agent_host_factory({**server_env(cp_server, heartbeat=0.3), "CBR_AGENT_BACKUP_SCHEDULE": "1h",
                               "CBR_AGENT_PASSWORD": PASSWORD, "CBR_AGENT_INSECURE_TEST_KDF": "1",
                               "CBR_AGENT_METRICS_TEXTFILE": str(textfile),
                               "CBR_AGENT_METRICS_ADDRESS": f"127.0.0.1:{port}"})
    assert host.cli("init").returncode == 0
    assert host.cli("path", "add", str(data)).returncode == 0
    host.start()
    wait_for(lambda: (host.state_json().get("last_backup") or {}).get("status") == "ok", timeout=30,
             what="first scheduled backup")
    wait_for(lambda: host.state_json().get("last_heartbeat"), what="heartbeat")

    def scraped():
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            return samples(response.read().decode())

    found = wait_for(lambda: (s := scraped()).get(("cbr_agent_last_backup_files", (("kind", "new"),)))
                     and s, what="backup metrics served")
    assert found[("cbr_agent_last_backup_files", (("kind", "new"),))] == 3
    assert found[("cbr_agent_last_backup_status", (("status", "ok"),))] == 1
    assert found[("cbr_agent_last_backup_success_timestamp_seconds", ())] > 1.7e9
    assert found[("cbr_agent_last_backup_bytes", (("kind", "total"),))] == 3 * 5000
    assert found[("cbr_agent_repository_size_bytes", ())] > 0
    assert found[("cbr_agent_control_plane_state", (("state", "ok"),))] == 1
    assert found[("cbr_agent_backup_failures_in_row", ())] == 0
    in_file = samples(textfile.read_text())
    assert in_file[("cbr_agent_last_backup_files", (("kind", "new"),))] == 3
    assert in_file[("cbr_agent_daemon_running", ())] == 1
    assert [p.name for p in textfile.parent.iterdir()] == ["cbr_agent.prom"]
    # the control plane goes away: heartbeat failures count, the state says so
    cp_server.stop()
    wait_for(lambda: samples(textfile.read_text()).get(("cbr_agent_heartbeat_failures_total", ()), 0) >= 1,
             timeout=15, what="heartbeat failure counted")
    assert samples(textfile.read_text())[("cbr_agent_control_plane_state", (("state", "unavailable"),))] == 1
    code, _ = host.stop()
    assert code == 0
    after = samples(textfile.read_text())
    assert after[("cbr_agent_daemon_running", ())] == 0
    assert after[("cbr_agent_last_backup_files", (("kind", "new"),))] == 3


BLOCK_LIBRARY = ("import sys; sys.modules['prometheus_client'] = None; "
                 "from cbr_agent.cli.main import main; sys.exit(main())")


def test_metrics_address_without_prometheus_client_is_one_line(agent_host_factory) -> None:
    host = agent_host_factory({"CBR_AGENT_METRICS_ADDRESS": "127.0.0.1:9"})
    out = subprocess.run([sys.executable, "-c", BLOCK_LIBRARY, "run"], env=host.env, capture_output=True,
                         text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert "prometheus_client is not installed: pip install 'cbr-agent[metrics]'" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr and "prometheus_client is not installed" in lines[-1], out.stderr
