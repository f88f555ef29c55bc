"""The CBR flow's server metrics, read from the database at each scrape (so every server process
sharing one database exports the same figures, whichever one claimed a task):

- ``cbr_controlplane_tasks{project_id, operation_type, status}``: tasks (operation logs) by type and
  status, as the table holds them (ended ones stay until their agent or vault is deleted);
- ``cbr_controlplane_task_dispatch_seconds{operation_type}``: a histogram of the time from a task's
  creation to its first claim by an agent, over every claimed task (backups an agent reports on its
  own were never dispatched and are left out);
- ``cbr_controlplane_vault_backups{project_id, vault_id, vault_name}`` and
  ``cbr_controlplane_vault_backup_bytes{project_id, vault_id, vault_name, kind}``: backups per vault
  and their bytes (``size``: the files they cover, summed; ``added``: what they added to the
  repositories after deduplication).

Registered by :class:`~cbr_agent.controlplane.metrics.ServerMetrics` through its ``register()``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from cbr_agent.controlplane import tasks
from cbr_agent.controlplane.store import AgentStore

PREFIX = "cbr_controlplane_"
#: dispatch latency buckets (seconds): an online agent claims within a second or two (long poll);
#: an offline one when it comes back
DISPATCH_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0)


class CbrCollector:
    def __init__(self, store: AgentStore) -> None:
        self.store = store

    def collect(self) -> Iterable[Any]:
        from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily

        buckets = ", ".join(
            f"SUM(CASE WHEN started_at - created_at <= {int(b * 1000)} THEN 1 ELSE 0 END)"
            for b in DISPATCH_BUCKETS
        )
        with self.store._transaction("BEGIN") as conn:
            by_status = conn.execute(
                "SELECT project_id, operation_type, status, COUNT(*) FROM tasks "
                "GROUP BY project_id, operation_type, status"
            ).fetchall()
            dispatch = conn.execute(
                f"SELECT operation_type, COUNT(*), COALESCE(SUM(started_at - created_at), 0), {buckets} "
                "FROM tasks WHERE attempts > 0 AND started_at IS NOT NULL GROUP BY operation_type"
            ).fetchall()
            vaults = conn.execute(
                "SELECT v.project_id, v.id, v.name, COUNT(b.id), COALESCE(SUM(b.size_bytes), 0), "
                "COALESCE(SUM(b.added_bytes), 0) FROM vaults v LEFT JOIN backups b "
                "ON b.project_id = v.project_id AND b.vault_id = v.id GROUP BY v.project_id, v.id, v.name"
            ).fetchall()
        counts = GaugeMetricFamily(PREFIX + "tasks", "Tasks (operation logs) by project, type and status",
                                   labels=["project_id", "operation_type", "status"])
        seen = {(p, op, st): n for p, op, st, n in by_status}
        for project in sorted({p for p, _, _ in seen}):
            for op in tasks.OPERATION_TYPES:  # every series exported, at 0 too, so rate() and alerts work
                for status in tasks.STATUSES:
                    counts.add_metric([project, op, status], seen.get((project, op, status), 0))
        yield counts
        latency = HistogramMetricFamily(PREFIX + "task_dispatch_seconds", "Time from a task's creation "
                                        "to its first claim by its agent", labels=["operation_type"])
        claimed = {row[0]: row for row in dispatch}
        for op in tasks.OPERATION_TYPES:
            row = claimed.get(op, (op, 0, 0, *(0,) * len(DISPATCH_BUCKETS)))
            series = [(str(b), row[3 + i]) for i, b in enumerate(DISPATCH_BUCKETS)] + [("+Inf", row[1])]
            latency.add_metric([op], series, sum_value=row[2] / 1000)
        yield latency
        backups = GaugeMetricFamily(PREFIX + "vault_backups", "Backups per vault",
                                    labels=["project_id", "vault_id", "vault_name"])
        size = GaugeMetricFamily(PREFIX + "vault_backup_bytes", "Bytes of the backups per vault (size: "
                                 "of the files they cover; added: to the repositories, after deduplication)",
                                 labels=["project_id", "vault_id", "vault_name", "kind"])
        for project, vault_id, name, count, total, added in vaults:
            backups.add_metric([project, vault_id, name], count)
            size.add_metric([project, vault_id, name, "size"], total)
            size.add_metric([project, vault_id, name, "added"], added)
        yield backups
        yield size
