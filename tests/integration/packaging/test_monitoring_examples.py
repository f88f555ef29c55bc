"""The monitoring examples under packaging/examples/: the Prometheus alert rules pass ``promtool check
rules`` and their unit tests (``promtool test rules``), every dashboard expression is valid PromQL, and
every metric and label they name is one the code really exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from cbr_agent.agent.metrics import AgentMetrics
from cbr_agent.controlplane import cbr_vaults, cbr_work
from cbr_agent.controlplane.metrics import ServerMetrics
from cbr_agent.controlplane.store import AgentStore
from cbr_agent.controlplane.validation import parse_register
from tests.integration.packaging.conftest import REPO

yaml = pytest.importorskip("yaml")

EXAMPLES = REPO / "packaging" / "examples"
RULES = EXAMPLES / "prometheus" / "cbr-agent-alerts.yml"
RULE_TESTS = EXAMPLES / "prometheus" / "cbr-agent-alerts.test.yml"
DASHBOARD = EXAMPLES / "grafana" / "cbr-agent-dashboard.json"
#: labels Prometheus adds when it scrapes (target labels), and the histogram's bucket label
SCRAPE_LABELS = {"instance", "job", "le"}
METRIC = re.compile(r"\b(cbr_[a-z_]+)\b")
SELECTOR = re.compile(r"\b(cbr_[a-z_]+)\{([^}]*)\}")
MATCHER = re.compile(r"([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)\s*\"")


def exported(tmp_path: Path) -> dict[str, set[str]]:
    """Every sample name the server and the agent export, with its label names."""
    names: dict[str, set[str]] = {}
    repo = tmp_path / "repo"
    repo.mkdir()
    agent = AgentMetrics("a", str(repo))
    agent.observe({"control_plane": "unavailable", "last_heartbeat": "2026-01-01T00:00:00+00:00",
                   "last_backup": {"status": "ok", "finished_at": "2026-01-01T00:00:00+00:00",
                                   "seconds": 1.0, "warnings": 0, "summary": {"files_new": 1}}})
    for family in agent.families():
        name = family.name + ("_total" if family.kind == "counter" else "")
        names[name] = {k for labels, _ in family.samples for k in labels}
    store = AgentStore(tmp_path / "cp.db")
    try:
        store.register("p", parse_register({"agent": {"agent_id": "a", "host_name": "h", "host_ip": "1.2.3.4",
                                                      "host_os": "linux"}}))
        # a vault with the agent and a checkpoint: the CBR flow's series (tasks, vaults) exist too
        billing = {"object_type": "file", "size": 10}
        resources = [{"id": "a", "type": "OS::Native::Server"}]
        vault = cbr_vaults.create_vault(store, "p", {"vault": {"name": "v", "billing": billing,
                                                               "resources": resources}})
        cbr_work.create_checkpoint(store, "p", {"checkpoint": {"vault_id": vault["vault"]["id"]}})
        server = ServerMetrics(store)
        server.observe("GET", "/x", 200, 0.01)
        for family in server.registry.collect():
            for sample in family.samples:
                names.setdefault(sample.name, set()).update(sample.labels)
    finally:
        store.close()
    return names


def rule_expressions() -> list[str]:
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    return [rule["expr"] for group in groups for rule in group["rules"]]


def dashboard_expressions() -> list[str]:
    data = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return [target["expr"] for panel in data["panels"] for target in panel.get("targets", [])]


@pytest.mark.parametrize("source", ["rules", "dashboard"])
def test_every_metric_and_label_named_is_exported(source: str, tmp_path: Path) -> None:
    names = exported(tmp_path)
    expressions = rule_expressions() if source == "rules" else dashboard_expressions()
    assert expressions
    for expr in expressions:
        used = METRIC.findall(expr)
        assert used, expr
        for metric in used:
            assert metric in names, f"{metric} (in {expr!r}) is not exported; exported: {sorted(names)}"
        for metric, matchers in SELECTOR.findall(expr):
            for label in MATCHER.findall(matchers):
                assert label in names[metric] | SCRAPE_LABELS, f"{metric} has no label {label}"


def test_the_three_asked_for_alerts_exist() -> None:
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    rules = {r["alert"]: r for g in groups for r in g["rules"]}
    assert rules["CbrAgentsAbnormal"]["for"] == "10m"
    assert "26 * 3600" in rules["CbrAgentNoSuccessfulBackup"]["expr"]
    assert rules["CbrAgentBackupFailing"]["expr"] == "cbr_agent_backup_failures_in_row >= 2"


def test_dashboard_is_importable_json() -> None:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert data["uid"] and data["title"] and data["__inputs"][0]["name"] == "DS_PROMETHEUS"
    ids = [p["id"] for p in data["panels"]]
    assert len(ids) == len(set(ids))
    for panel in data["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.skip("promtool is not installed (Debian package 'prometheus'; .ci/run installs it); "
                    "the metric-name checks above still ran")
    return found


def test_promtool_checks_the_rules_and_runs_their_unit_tests() -> None:
    tool = promtool()
    checked = subprocess.run([tool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = subprocess.run([tool, "test", "rules", RULE_TESTS.name], cwd=RULE_TESTS.parent,
                            capture_output=True, text=True, timeout=120)
    assert tested.returncode == 0 and "SUCCESS" in tested.stdout, tested.stdout + tested.stderr


def test_promtool_parses_every_dashboard_expression(tmp_path: Path) -> None:
    tool = promtool()
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:expr{i}", "expr": expr} for i, expr in enumerate(dashboard_expressions())]}]}
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump(rules), encoding="utf-8")
    checked = subprocess.run([tool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
