"""The daemon's metrics: values from recorded state changes, the text format with and without
prometheus_client, the atomic textfile, and the config keys that turn them on."""

from __future__ import annotations

import math
import os
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from cbr_agent.agent import metrics as agent_metrics
from cbr_agent.agent.metrics import AgentExporter, AgentMetrics, Family, render, render_text, write_textfile
from cbr_agent.config import load_settings
from cbr_agent.errors import ConfigError
from cbr_agent.hostport import parse_host_port

OK_BACKUP = {"status": "ok", "finished_at": "2026-12-04T10:00:05+00:00", "seconds": 5.25, "warnings": 0,
             "summary": {"files_new": 3, "files_changed": 2, "files_unchanged": 10, "bytes_total": 4096,
                         "bytes_read": 1024, "bytes_added": 512, "bytes_stored": 300}}
FAILED_BACKUP = {"status": "failed", "finished_at": "2026-12-04T11:00:00+00:00", "seconds": 1.0,
                 "error": "disk full"}


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(text: str, name: str, **labels: str) -> float:
    return samples(text)[(name, tuple(sorted(labels.items())))]


def test_backup_outcomes_heartbeats_and_control_plane_state(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "data").mkdir(parents=True)
    (repo / "data" / "pack").write_bytes(b"x" * 1000)
    (repo / "config").write_bytes(b"y" * 24)
    metrics = AgentMetrics("agent-1", repo.as_uri())
    extra = metrics.observe({"last_backup": OK_BACKUP})
    assert extra == {"last_backup_success_at": OK_BACKUP["finished_at"], "backup_failures_in_row": 0}
    metrics.observe({"control_plane": "unavailable", "last_error": {"message": "down"}})
    metrics.observe({"control_plane": "error 503"})
    metrics.observe({"control_plane": "ok", "last_heartbeat": "2026-12-04T10:01:00+00:00"})
    text = render(metrics)
    assert value(text, "cbr_agent_last_backup_success_timestamp_seconds") == 1796378405.0
    assert value(text, "cbr_agent_last_backup_duration_seconds") == 5.25
    assert value(text, "cbr_agent_last_backup_files", kind="new") == 3
    assert value(text, "cbr_agent_last_backup_files", kind="changed") == 2
    assert value(text, "cbr_agent_last_backup_files", kind="unchanged") == 10
    assert value(text, "cbr_agent_last_backup_bytes", kind="read") == 1024
    assert value(text, "cbr_agent_last_backup_bytes", kind="stored") == 300
    assert value(text, "cbr_agent_last_backup_status", status="ok") == 1
    assert value(text, "cbr_agent_last_backup_status", status="failed") == 0
    assert value(text, "cbr_agent_repository_size_bytes") == 1024
    assert value(text, "cbr_agent_heartbeat_failures_total") == 2
    assert value(text, "cbr_agent_control_plane_state", state="ok") == 1
    assert value(text, "cbr_agent_control_plane_state", state="error") == 0
    assert value(text, "cbr_agent_last_heartbeat_timestamp_seconds") == 1796378460.0
    assert value(text, "cbr_agent_info", agent_id="agent-1", version=agent_metrics.__version__) == 1


def test_failures_in_row_count_until_a_success_and_survive_a_restart() -> None:
    metrics = AgentMetrics("a", "s3://elsewhere")
    metrics.observe({"last_backup": OK_BACKUP})
    assert metrics.observe({"last_backup": FAILED_BACKUP})["backup_failures_in_row"] == 1
    metrics.observe({"last_backup": {"status": "cancelled"}})  # a stop is no failure, nor a success
    state = {"last_backup": FAILED_BACKUP, **metrics.observe({"last_backup": FAILED_BACKUP}),
             "last_backup_success_at": OK_BACKUP["finished_at"]}
    assert state["backup_failures_in_row"] == 2
    again = AgentMetrics("a", "s3://elsewhere")
    again.load(state)
    text = render(again)
    assert value(text, "cbr_agent_backup_failures_in_row") == 2
    assert value(text, "cbr_agent_last_backup_status", status="failed") == 1
    assert value(text, "cbr_agent_last_backup_success_timestamp_seconds") == 1796378405.0
    assert ("cbr_agent_repository_size_bytes", ()) not in samples(text)  # not a local repository
    again.observe({"last_backup": OK_BACKUP})
    assert value(render(again), "cbr_agent_backup_failures_in_row") == 0


def test_bytes_by_kind_of_file_when_the_summary_has_them() -> None:
    metrics = AgentMetrics("a", "s3://elsewhere")
    metrics.observe({"last_backup": OK_BACKUP})  # a summary of an older engine: no split
    names = {labels for name, labels in samples(render(metrics)) if name == "cbr_agent_last_backup_bytes"}
    assert {dict(labels)["kind"] for labels in names} == {"total", "read", "added", "stored"}
    split = {**OK_BACKUP["summary"], "bytes_new": 1000, "bytes_changed": 24, "bytes_unchanged": 3072}
    metrics.observe({"last_backup": {**OK_BACKUP, "summary": split}})
    text = render(metrics)
    assert value(text, "cbr_agent_last_backup_bytes", kind="new") == 1000
    assert value(text, "cbr_agent_last_backup_bytes", kind="changed") == 24
    assert value(text, "cbr_agent_last_backup_bytes", kind="unchanged") == 3072


def test_scan_kind_of_the_last_backup_when_the_summary_says() -> None:
    metrics = AgentMetrics("a", "s3://elsewhere")
    metrics.observe({"last_backup": OK_BACKUP})  # no scan in the summary: nothing exported
    assert not [n for n, _ in samples(render(metrics)) if n == "cbr_agent_last_backup_scan"]
    for kind, other in (("journal", "full"), ("full", "journal")):
        metrics.observe({"last_backup": {**OK_BACKUP, "summary": {**OK_BACKUP["summary"], "scan": kind}}})
        text = render(metrics)
        assert value(text, "cbr_agent_last_backup_scan", kind=kind) == 1
        assert value(text, "cbr_agent_last_backup_scan", kind=other) == 0


def test_cbr_task_running_progress_and_last_result_survive_a_restart() -> None:
    metrics = AgentMetrics("a", "s3://elsewhere", clock=lambda: 1796378000.0)
    text = render(metrics)
    assert value(text, "cbr_agent_task_running", operation_type="backup") == 0
    assert value(text, "cbr_agent_tasks_total", operation_type="restore", status="failed") == 0
    assert not any(name == "cbr_agent_last_task_status" for name, _ in samples(text))
    metrics.observe({"task": {"id": "t1", "operation_type": "restore", "progress": 0}})
    metrics.observe({"task": {"id": "t1", "operation_type": "restore", "progress": 40}})
    text = render(metrics)
    assert value(text, "cbr_agent_task_running", operation_type="restore") == 1
    assert value(text, "cbr_agent_task_running", operation_type="backup") == 0
    assert value(text, "cbr_agent_task_progress_percent") == 40
    last = {"id": "t1", "operation_type": "restore", "status": "failed",
            "ended_at": "2026-12-04T10:00:00+0000"}
    metrics.observe({"task": None, "last_task": last})
    metrics.observe({"task": None, "last_task": {**last, "id": "t2", "operation_type": "backup",
                                                 "status": "success", "ended_at": None}})
    text = render(metrics)
    assert value(text, "cbr_agent_task_running", operation_type="restore") == 0
    assert value(text, "cbr_agent_task_progress_percent") == 0
    assert value(text, "cbr_agent_tasks_total", operation_type="restore", status="failed") == 1
    assert value(text, "cbr_agent_tasks_total", operation_type="backup", status="success") == 1
    assert value(text, "cbr_agent_last_task_status", operation_type="backup", status="success") == 1
    assert value(text, "cbr_agent_last_task_status", operation_type="backup", status="failed") == 0
    assert value(text, "cbr_agent_last_task_timestamp_seconds") == 1796378000.0  # no end time: the clock
    again = AgentMetrics("a", "s3://elsewhere")
    again.load({"last_task": last})
    text = render(again)
    assert value(text, "cbr_agent_last_task_status", operation_type="restore", status="failed") == 1
    assert value(text, "cbr_agent_last_task_timestamp_seconds") == 1796378400.0
    assert value(text, "cbr_agent_tasks_total", operation_type="restore", status="failed") == 0  # a counter


def test_without_prometheus_client_the_same_text_is_written(monkeypatch: pytest.MonkeyPatch) -> None:
    metrics = AgentMetrics("a", "/nonexistent/repo")
    metrics.observe({"last_backup": OK_BACKUP, "control_plane": "refused"})
    with_library = render(metrics)
    monkeypatch.setattr(agent_metrics, "_library", lambda: None)
    without = render(metrics)
    assert samples(without) == samples(with_library)
    assert "# TYPE cbr_agent_heartbeat_failures_total counter" in without


# the reference parser splits lines as Python does (\x85, \u2028 ...); Prometheus splits at \n only
LINE_BREAKS = "\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
label_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",), exclude_characters=LINE_BREAKS),
                     max_size=20)


@given(labels=st.dictionaries(st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True), label_text,
                              max_size=3),
       number=st.floats(allow_nan=False, width=64) | st.integers(-(2**60), 2**60).map(float),
       help_text=label_text.map(str.strip))
def test_render_text_round_trips_through_the_reference_parser(labels, number, help_text) -> None:
    family = Family("cbr_agent_x", "gauge", help_text).add(number, **labels)
    parsed = list(text_string_to_metric_families(render_text([family])))
    assert len(parsed) == 1 and parsed[0].documentation == help_text
    (sample,) = parsed[0].samples
    assert sample.labels == labels
    assert sample.value == number or (math.isinf(number) and sample.value == number)


def test_textfile_is_replaced_atomically_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "cbr_agent.prom"
    target.write_text("old\n")
    write_textfile(target, "cbr_agent_x 1\n")
    assert target.read_text() == "cbr_agent_x 1\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert sorted(os.listdir(tmp_path)) == ["cbr_agent.prom"]


def test_exporter_writes_at_each_change_and_zero_running_on_close(tmp_path: Path) -> None:
    settings = load_settings(overrides={"state_dir": str(tmp_path / "state"),
                                        "metrics_textfile": str(tmp_path / "agent.prom")})
    exporter = AgentExporter.from_settings(settings, "agent-9", {"last_backup": OK_BACKUP})
    exporter.start()
    text = (tmp_path / "agent.prom").read_text()
    assert value(text, "cbr_agent_daemon_running") == 1
    assert value(text, "cbr_agent_last_backup_duration_seconds") == 5.25
    exporter.observe({"backup_running": True})
    assert value((tmp_path / "agent.prom").read_text(), "cbr_agent_backup_running") == 1
    exporter.close()
    assert value((tmp_path / "agent.prom").read_text(), "cbr_agent_daemon_running") == 0


def test_an_unwritable_textfile_is_said_once_and_does_not_raise(tmp_path: Path,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    exporter = AgentExporter(AgentMetrics("a", "x"), textfile=str(tmp_path / "missing-dir" / "a.prom"))
    exporter.observe({"control_plane": "ok"})
    exporter.observe({"control_plane": "ok"})
    assert caplog.text.count("cannot write the metrics textfile") == 1


def test_disabled_exporter_does_nothing(tmp_path: Path) -> None:
    settings = load_settings(overrides={"state_dir": str(tmp_path)})
    exporter = AgentExporter.from_settings(settings, "a", {})
    assert exporter.metrics is None
    assert exporter.observe({"last_backup": OK_BACKUP}) == {}
    exporter.close()


@pytest.mark.parametrize(("key", "bad", "message"), [
    ("metrics_textfile", "/var/lib/node_exporter/cbr.txt", "does not end in .prom"),
    ("metrics_address", "9561", "has no port"),
    ("metrics_address", "::1:9561", "in brackets"),
    ("metrics_address", "127.0.0.1:70000", "from 1 to 65535"),
])
def test_bad_metrics_keys_are_one_clear_error(tmp_path: Path, key: str, bad: str, message: str) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(f'{key} = "{bad}"\n')
    with pytest.raises(ConfigError, match=message) as info:
        load_settings(config_file=config)
    assert key in str(info.value)


@pytest.mark.parametrize(("text", "expected"), [
    ("127.0.0.1:9561", ("127.0.0.1", 9561)), ("[::1]:1", ("::1", 1)), (":9561", ("", 9561)),
    ("localhost:65535", ("localhost", 65535)),
])
def test_host_port(text: str, expected: tuple[str, int]) -> None:
    assert parse_host_port(text) == expected


def test_metrics_address_without_the_library_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(agent_metrics, "_library", lambda: None)
    with pytest.raises(ConfigError, match=r"prometheus_client is not installed: pip install "
                       r"'cbr-agent\[metrics\]'"):
        agent_metrics.serve(AgentMetrics("a", "x"), "127.0.0.1:0")


def test_changes_from_several_threads_always_leave_a_whole_file(tmp_path: Path,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    import threading

    target = tmp_path / "agent.prom"
    exporter = AgentExporter(AgentMetrics("a", "x"), textfile=str(target))
    errors: list[BaseException] = []

    def record(n: int) -> None:
        try:
            for i in range(150):
                exporter.observe({"control_plane": "ok", "backup_running": (i + n) % 2 == 0})
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=record, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == [] and "cannot write" not in caplog.text
    assert value(target.read_text(), "cbr_agent_daemon_running") == 1
    assert sorted(os.listdir(tmp_path)) == ["agent.prom"]
