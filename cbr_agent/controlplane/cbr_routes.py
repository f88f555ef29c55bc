"""The CBR routes (vaults, policies, checkpoints, backups, operation logs, agent tasks) in one table,
served over HTTP by :mod:`cbr_agent.controlplane.app` and called in-process by the embedded control
plane: one code path, so both answer the same status, body and ``BackupService.*`` code.

A handler takes ``(store, project_id, path_params, query_pairs, body)`` and returns ``(status, body)``
(``body`` None for an empty answer). The agent's long poll is the one route that waits: its handler
answers at once or returns None, and each side waits its own way (asyncio on the server, a sleep
loop in-process).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cbr_agent.controlplane import agent_work, cbr_policies, cbr_vaults, cbr_work
from cbr_agent.controlplane import cbr_common as c
from cbr_agent.controlplane.store import AgentStore
from cbr_agent.controlplane.validation import check_agent_id

Handler = Callable[
    [AgentStore, str, dict[str, str], list[tuple[str, str]], dict[str, Any]], tuple[int, Any]
]
POLL = "poll"

#: how often a server process looks for new events to wake its long polls (env for tests/benchmarks)
EVENT_TICK = float(os.environ.get("CBR_AGENT_SERVER_EVENT_TICK", "0.2"))
#: a waiting poll re-reads the database this often even without a wakeup (a lost wakeup costs this),
#: and notices this late that its client went away
SAFETY_RECHECK = 15.0
#: set when the server shuts down: waiting polls answer at once instead of holding the shutdown
STOPPING = threading.Event()


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # below /v3/{project_id}
    handler: Handler | str
    with_json: bool = False

    def regex(self) -> re.Pattern[str]:
        return re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", self.path) + "$")


def _one(pairs: list[tuple[str, str]]) -> dict[str, str]:
    return dict(pairs)


def _id(params: dict[str, str], key: str) -> str:
    return c.ident(params[key], key)


def _agent(params: dict[str, str]) -> str:
    return check_agent_id(params["agent_id"])


ROUTES: tuple[Route, ...] = (
    Route("POST", "/vaults", lambda s, p, a, q, b: (200, cbr_vaults.create_vault(s, p, b)), True),
    Route("GET", "/vaults", lambda s, p, a, q, b: (200, cbr_vaults.list_vaults(s, p, _one(q)))),
    Route(
        "GET",
        "/vaults/{vault_id}",
        lambda s, p, a, q, b: (200, cbr_vaults.show_vault(s, p, _id(a, "vault_id"))),
    ),
    Route(
        "DELETE",
        "/vaults/{vault_id}",
        lambda s, p, a, q, b: (204, cbr_vaults.delete_vault(s, p, _id(a, "vault_id"))),
    ),
    Route(
        "POST",
        "/vaults/{vault_id}/addresources",
        lambda s, p, a, q, b: (200, cbr_vaults.add_resources(s, p, _id(a, "vault_id"), b)),
        True,
    ),
    Route(
        "POST",
        "/vaults/{vault_id}/removeresources",
        lambda s, p, a, q, b: (200, cbr_vaults.remove_resources(s, p, _id(a, "vault_id"), b)),
        True,
    ),
    Route(
        "POST",
        "/vaults/{vault_id}/associatepolicy",
        lambda s, p, a, q, b: (200, cbr_vaults.associate_policy(s, p, _id(a, "vault_id"), b)),
        True,
    ),
    Route(
        "POST",
        "/vaults/{vault_id}/dissociatepolicy",
        lambda s, p, a, q, b: (200, cbr_vaults.dissociate_policy(s, p, _id(a, "vault_id"), b)),
        True,
    ),
    Route("POST", "/policies", lambda s, p, a, q, b: (200, cbr_policies.create_policy(s, p, b)), True),
    Route("GET", "/policies", lambda s, p, a, q, b: (200, cbr_policies.list_policies(s, p, _one(q)))),
    Route(
        "GET",
        "/policies/{policy_id}",
        lambda s, p, a, q, b: (200, cbr_policies.show_policy(s, p, _id(a, "policy_id"))),
    ),
    Route(
        "PUT",
        "/policies/{policy_id}",
        lambda s, p, a, q, b: (200, cbr_policies.update_policy(s, p, _id(a, "policy_id"), b)),
        True,
    ),
    Route(
        "DELETE",
        "/policies/{policy_id}",
        lambda s, p, a, q, b: (204, cbr_policies.delete_policy(s, p, _id(a, "policy_id"))),
    ),
    Route("POST", "/checkpoints", lambda s, p, a, q, b: (200, cbr_work.create_checkpoint(s, p, b)), True),
    Route(
        "GET",
        "/checkpoints/{checkpoint_id}",
        lambda s, p, a, q, b: (200, cbr_work.show_checkpoint(s, p, _id(a, "checkpoint_id"))),
    ),
    Route("GET", "/backups", lambda s, p, a, q, b: (200, cbr_work.list_backups(s, p, q))),
    Route(
        "GET",
        "/backups/{backup_id}",
        lambda s, p, a, q, b: (200, cbr_work.show_backup(s, p, _id(a, "backup_id"))),
    ),
    Route(
        "DELETE",
        "/backups/{backup_id}",
        lambda s, p, a, q, b: (204, cbr_work.delete_backup(s, p, _id(a, "backup_id"))),
    ),
    Route(
        "POST",
        "/backups/{backup_id}/restore",
        lambda s, p, a, q, b: (202, cbr_work.restore_backup(s, p, _id(a, "backup_id"), b)),
        True,
    ),
    Route("GET", "/operation-logs", lambda s, p, a, q, b: (200, cbr_work.list_oplogs(s, p, _one(q)))),
    Route(
        "GET",
        "/operation-logs/{operation_log_id}",
        lambda s, p, a, q, b: (200, cbr_work.show_oplog(s, p, _id(a, "operation_log_id"))),
    ),
    # agent-facing extensions (README, "Agent-facing extensions")
    Route("GET", "/agents/{agent_id}/tasks", POLL),
    Route(
        "POST",
        "/agents/{agent_id}/tasks/{task_id}/claim",
        lambda s, p, a, q, b: (200, agent_work.claim(s, p, _agent(a), _id(a, "task_id"), b)),
        True,
    ),
    Route(
        "POST",
        "/agents/{agent_id}/tasks/{task_id}/progress",
        lambda s, p, a, q, b: (200, agent_work.progress(s, p, _agent(a), _id(a, "task_id"), b)),
        True,
    ),
    Route(
        "POST",
        "/agents/{agent_id}/tasks/{task_id}/result",
        lambda s, p, a, q, b: (200, agent_work.result(s, p, _agent(a), _id(a, "task_id"), b)),
        True,
    ),
    Route(
        "POST",
        "/agents/{agent_id}/backups",
        lambda s, p, a, q, b: (200, agent_work.report_backup(s, p, _agent(a), b)),
        True,
    ),
    Route(
        "POST",
        "/agents/{agent_id}/backups/forgotten",
        lambda s, p, a, q, b: (200, agent_work.forgotten(s, p, _agent(a), b)),
        True,
    ),
)


def _poll_args(params: dict[str, str], query: list[tuple[str, str]]) -> tuple[str, float, str | None]:
    single = _one(query)
    return _agent(params), agent_work.parse_wait(single), single.get("config_version")


def _empty_answer(store: AgentStore, project_id: str, agent_id: str) -> dict[str, Any]:
    answer = agent_work.poll_once(store, project_id, agent_id, None)
    assert answer is not None  # with no known version there is always something to tell
    return answer


# -- in-process --------------------------------------------------------------------------------------

_COMPILED = [(r, r.regex()) for r in ROUTES]


def dispatch(
    store: AgentStore,
    project_id: str,
    method: str,
    path: str,
    query: list[tuple[str, str]],
    body: Any,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[int, Any]:
    """Run the route for ``method path`` (below /v3/{project_id}) in-process, as the server would."""
    from cbr_agent.controlplane import faults, validation

    for route, regex in _COMPILED:
        match = regex.match(path)
        if match is None or route.method != method:
            continue
        params = match.groupdict()
        if route.handler == POLL:
            agent_id, wait, known = _poll_args(params, query)
            deadline = time.monotonic() + wait
            while True:
                answer = agent_work.poll_once(store, project_id, agent_id, known)
                if answer is not None:
                    return 200, answer
                if time.monotonic() >= deadline:
                    return 200, _empty_answer(store, project_id, agent_id)
                sleep(min(0.25, max(0.0, deadline - time.monotonic())))
        data: dict[str, Any] = {}
        if route.with_json:
            data = validation.parse_json(json.dumps(body if body is not None else None).encode())
        assert callable(route.handler)
        return route.handler(store, project_id, params, list(query), data)
    raise faults.no_such_api(method, path)


# -- over HTTP ---------------------------------------------------------------------------------------


class Waker:
    """Per-process wakeups of waiting long polls, fed by the ``events`` table (so a task created by
    another server process wakes a poll held here). An optimisation only: each poll also re-reads
    the database every :data:`SAFETY_RECHECK` seconds."""

    def __init__(self, store: AgentStore, db: Any) -> None:
        self.store = store
        self.db = db  # the database threads: the event loop never waits on the database
        self.waiters: dict[tuple[str, str], set[asyncio.Event]] = {}
        self._task: asyncio.Task[None] | None = None
        self._seq: int | None = None
        self._listener: Any = None

    def _notified(self, keys: Any) -> None:
        """From the LISTEN thread: these agents have news; ``None``: the listener reconnected and
        may have missed some, so every poll held here re-reads."""
        self.wake(self.waiters.keys() if keys is None else keys)

    def watch(self, key: tuple[str, str]) -> asyncio.Event:
        if self._task is None or self._task.done():
            loop = asyncio.get_running_loop()
            self._task = loop.create_task(self._run())
            listen = getattr(self.store, "listen", None)
            if listen is not None and self._listener is None:  # PostgreSQL: LISTEN/NOTIFY wakeups
                self._listener = listen(lambda keys: loop.call_soon_threadsafe(self._notified, keys),
                                        STOPPING)
        event = asyncio.Event()
        self.waiters.setdefault(key, set()).add(event)
        return event

    def unwatch(self, key: tuple[str, str], event: asyncio.Event) -> None:
        found = self.waiters.get(key)
        if found is not None:
            found.discard(event)
            if not found:
                del self.waiters[key]

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(Exception):  # a busy database: try again next tick
                await self._tick()
            await asyncio.sleep(EVENT_TICK)

    async def _tick(self) -> None:
        if STOPPING.is_set():  # the server stops: every waiting poll answers now
            for events in self.waiters.values():
                for event in events:
                    event.set()
        if self._seq is None or not self.waiters:
            self._seq = await self.db(agent_work.last_event, self.store)
            return
        self._seq, keys = await self.db(agent_work.events_after, self.store, self._seq, self.store._now_ms())
        self.wake(keys)

    def wake(self, keys: Any) -> None:
        """Wake the polls held here for these ``(project_id, agent_id)`` keys (on the event loop)."""
        for key in list(keys):
            for event in self.waiters.get(key, ()):
                event.set()


def install(app: Any, api: Any) -> None:
    """Add every route of :data:`ROUTES` to the FastAPI ``app``, authenticated by ``api.admit``."""
    from starlette.responses import Response

    from cbr_agent.controlplane.app import json_response

    waker = Waker(api.store, api.db)

    def endpoint(route: Route) -> Callable[..., Any]:
        async def handle(request: Any) -> Any:
            project_id = request.path_params["project_id"]
            body = await api.admit(request, project_id, with_json=route.with_json)
            params = {k: v for k, v in request.path_params.items() if k != "project_id"}
            query = request.query_params.multi_items()
            if route.handler == POLL:
                return json_response(await _long_poll(waker, request, api.store, project_id, params, query))
            assert callable(route.handler)
            status, answer = await api.db(route.handler, api.store, project_id, params, query, body)
            if answer is None:
                return Response(b"", status_code=status)
            response = json_response(answer)
            response.status_code = status
            return response

        return handle

    for route in ROUTES:
        app.add_route("/v3/{project_id}" + route.path, endpoint(route), methods=[route.method])


async def _long_poll(
    waker: Waker,
    request: Any,
    store: AgentStore,
    project_id: str,
    params: dict[str, str],
    query: list[tuple[str, str]],
) -> dict[str, Any]:
    agent_id, wait, known = _poll_args(params, query)
    key = (project_id, agent_id)
    event = waker.watch(key)  # before the first read: a task created after it wakes us
    try:
        deadline = time.monotonic() + wait
        while True:
            answer = await waker.db(agent_work.poll_once, store, project_id, agent_id, known)
            if answer is not None:
                return answer
            remaining = deadline - time.monotonic()
            if remaining <= 0 or STOPPING.is_set() or await request.is_disconnected():
                return await waker.db(_empty_answer, store, project_id, agent_id)
            with contextlib.suppress(asyncio.TimeoutError):  # one timer per wait: cheap with 10,000 polls
                await asyncio.wait_for(event.wait(), min(remaining, SAFETY_RECHECK))
            event.clear()
    finally:
        waker.unwatch(key, event)
