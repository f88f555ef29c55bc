"""The server's Prometheus metrics, served by ``cbr-agent server --metrics-address HOST:PORT`` on an
address of their own (so ``/metrics`` is never exposed where the API is).

- ``cbr_controlplane_agents{project_id, status}``: agents by reported status, counted at each scrape
  (one GROUP BY over the agents table);
- ``cbr_controlplane_heartbeats_total{result}``: registrations/heartbeats (``POST /v3/{project_id}/agents``);
- ``cbr_controlplane_http_requests_total{method, route, code}`` and
  ``cbr_controlplane_http_request_duration_seconds{method, route}``: every HTTP request, API and console.
  ``route`` is the route *template* (``/v3/{project_id}/agents/{agent_id}``), never the raw path, and
  ``unmatched`` for a path no route has, so the number of series stays bounded whatever clients send.

Tasks by type and status, dispatch latency and backups and bytes per vault come from the CBR flow's
collector (:mod:`cbr_agent.controlplane.cbr_metrics`), added through :meth:`ServerMetrics.register`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cbr_agent.api.models import AGENT_STATUSES
from cbr_agent.controlplane.cbr_metrics import CbrCollector
from cbr_agent.controlplane.store import AgentStore

PREFIX = "cbr_controlplane_"
METHODS = frozenset({"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"})
HEARTBEAT_ROUTE = "/v3/{project_id}/agents"
#: latency buckets (seconds): a heartbeat takes about a millisecond, a console page tens
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def missing_library_error() -> str:
    return ("--metrics-address needs prometheus_client: pip install 'cbr-agent[metrics]' "
            "(the 'server' extra brings it too)")


class _AgentsCollector:
    def __init__(self, store: AgentStore) -> None:
        self.store = store

    def collect(self) -> Iterable[Any]:
        from prometheus_client.core import GaugeMetricFamily

        family = GaugeMetricFamily(PREFIX + "agents", "Agents by reported status (normal, abnormal: "
                                   "no heartbeat within --stale-after, uninstall)",
                                   labels=["project_id", "status"])
        counts = self.store.count_by_status()
        for project in sorted({p for p, _ in counts}):
            for status in AGENT_STATUSES:
                family.add_metric([project, status], counts.get((project, status), 0))
        yield family


class ServerMetrics:
    """The registry, the request metrics and the ASGI middleware that feeds them."""

    def __init__(self, store: AgentStore) -> None:
        import prometheus_client as lib

        self.lib = lib
        self.registry = lib.CollectorRegistry(auto_describe=True)
        self.requests = lib.Counter(PREFIX + "http_requests", "HTTP requests by method, route "
                                    "template and status code", ["method", "route", "code"],
                                    registry=self.registry)
        self.latency = lib.Histogram(PREFIX + "http_request_duration_seconds", "Time to answer an HTTP "
                                     "request, by method and route template", ["method", "route"],
                                     buckets=BUCKETS, registry=self.registry)
        self.heartbeats = lib.Counter(PREFIX + "heartbeats", "Agent registrations and heartbeats "
                                      "(result ok or error)", ["result"], registry=self.registry)
        for result in ("ok", "error"):
            self.heartbeats.labels(result)  # exported at 0 from the start, so rate() works
        self.registry.register(_AgentsCollector(store))
        self.register(CbrCollector(store))

    def register(self, collector: Any) -> None:
        """Add a collector (the CBR flow's tasks, dispatch and backups per vault)."""
        self.registry.register(collector)

    def observe(self, method: str, route: str, code: int, seconds: float) -> None:
        method = method if method in METHODS else "other"
        self.requests.labels(method, route, str(code)).inc()
        self.latency.labels(method, route).observe(seconds)
        if method == "POST" and route == HEARTBEAT_ROUTE:
            self.heartbeats.labels("ok" if code == 200 else "error").inc()

    def middleware(self, app: ASGIApp, routes: Callable[[], Sequence[BaseRoute]]) -> ASGIApp:
        return _RequestMetrics(app, self, routes)

    def serve(self, address: str) -> Any:
        from cbr_agent.hostport import listen_metrics

        return listen_metrics(self.lib, self.registry, address, "--metrics-address")


def route_template(routes: Sequence[BaseRoute], scope: Scope) -> str:
    """The path template of the route ``scope`` goes to (a method mismatch counts), else ``unmatched``."""
    partial = None
    for route in routes:
        match, _ = route.matches(scope)
        if match == Match.FULL:
            return str(getattr(route, "path", "unmatched"))
        if match == Match.PARTIAL and partial is None:
            partial = str(getattr(route, "path", "unmatched"))
    return partial or "unmatched"


class _RequestMetrics:
    """Pure ASGI middleware: counts and times every HTTP request by route template."""

    def __init__(self, app: ASGIApp, metrics: ServerMetrics, routes: Callable[[], Sequence[BaseRoute]]):
        self.app = app
        self.metrics = metrics
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.metrics.observe(scope["method"], route_template(self.routes(), scope), status,
                                 time.perf_counter() - started)
