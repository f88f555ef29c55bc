"""Validation of agents-API requests, shared by the HTTP server and the embedded control plane.

Each ``parse_*`` function takes the decoded JSON body (or the query pairs) and returns clean, typed,
normalized values, or raises ``ApiError(400, BackupService.9900)`` with a message naming the
offending field (``agent.host_name``, ``add_path[2]``, ``exclude_path[0].exclude_path_name[1]`` ...).
Unknown fields are ignored; ``null`` counts as absent. Nothing here touches the database, so a
rejected request changes nothing.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from cbr_agent.api.models import AGENT_STATUSES, AGENT_TYPES, AgentRegistration
from cbr_agent.controlplane.faults import bad_request
from cbr_agent.pathrules import PathRuleError, normalize_exclude, normalize_path

MAX_TEXT = 255
MAX_AGENT_ID = 64
MAX_PATHS_PER_REQUEST = 1000
MAX_EXCLUDES_PER_PATH = 1000
MAX_LIMIT = 1000
DEFAULT_LIMIT = 1000
MAX_OFFSET = 2**31 - 1
AGENT_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*\Z")

_JSON_TYPES = {dict: "object", list: "array", str: "string", bool: "boolean", int: "integer",
               float: "number", type(None): "null"}


def json_type(value: Any) -> str:
    return _JSON_TYPES.get(type(value), type(value).__name__)


#: longer JSON numbers are refused: no field needs them, and converting one costs time (quadratic
#: in its length; Python itself refuses integers of more than 4,300 digits with a ValueError)
MAX_NUMBER_DIGITS = 100


class _Refused(Exception):
    """Raised from the JSON decoder's hooks; becomes a 400."""


def _json_int(text: str) -> int:
    if len(text) > MAX_NUMBER_DIGITS:
        raise _Refused(f"a number has {len(text)} digits; at most {MAX_NUMBER_DIGITS} are accepted")
    return int(text)


def _json_float(text: str) -> float:
    if len(text) > MAX_NUMBER_DIGITS:
        raise _Refused(f"a number has {len(text)} characters; at most {MAX_NUMBER_DIGITS} are accepted")
    number = float(text)
    if not math.isfinite(number):
        raise _Refused(f"the number {text} is out of range")
    return number


def _json_constant(name: str) -> Any:
    # json.loads accepts NaN, Infinity and -Infinity, which are not JSON
    raise _Refused(f"{name} is not a JSON value")


def _json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    data = dict(pairs)
    if len(data) != len(pairs):
        # a key given twice means different things to different parsers (first or last wins)
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _Refused(f"the key {key!r} appears twice in one object")
            seen.add(key)
    return data


def parse_json(body: bytes) -> dict[str, Any]:
    """The request body as a JSON object. Whatever the bytes, the only error is a 400 naming what is
    wrong: not UTF-8, not JSON (or NaN/Infinity), a key twice in one object, a number of more than
    :data:`MAX_NUMBER_DIGITS` digits, nesting too deep, or not an object."""
    if not body.strip():
        raise bad_request("request body is empty; a JSON object is required")
    try:
        data = json.loads(body.decode("utf-8"), parse_int=_json_int, parse_float=_json_float,
                          parse_constant=_json_constant, object_pairs_hook=_json_object)
    except UnicodeDecodeError:
        raise bad_request("request body is not valid UTF-8") from None
    except json.JSONDecodeError as exc:
        raise bad_request(f"request body is not valid JSON: {exc.msg} at line {exc.lineno} "
                          f"column {exc.colno}") from None
    except _Refused as exc:
        raise bad_request(f"request body is refused: {exc}") from None
    except RecursionError:
        raise bad_request("request body is nested too deeply") from None
    except ValueError as exc:  # any other conversion the decoder refuses: still the caller's fault
        raise bad_request(f"request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise bad_request(f"request body must be a JSON object, got {json_type(data)}")
    return data


def _object(parent: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = parent.get(key)
    if value is None:
        raise bad_request(f"{where} is required")
    if not isinstance(value, dict):
        raise bad_request(f"{where} must be an object, got {json_type(value)}")
    return value


def check_text(value: Any, where: str, *, max_len: int = MAX_TEXT, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise bad_request(f"{where} must be a string, got {json_type(value)}")
    if not value and not allow_empty:
        raise bad_request(f"{where} must not be empty")
    if len(value) > max_len:
        raise bad_request(f"{where} is longer than {max_len} characters")
    if "\x00" in value:
        raise bad_request(f"{where} contains a NUL byte")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise bad_request(f"{where} is not valid Unicode (lone surrogate)") from None
    return value


def _required_text(data: dict[str, Any], key: str, where: str) -> str:
    if data.get(key) is None:
        raise bad_request(f"{where}.{key} is required")
    return check_text(data[key], f"{where}.{key}")


def _optional_text(data: dict[str, Any], key: str, where: str, *, allow_empty: bool = False) -> str | None:
    if data.get(key) is None:
        return None
    return check_text(data[key], f"{where}.{key}", allow_empty=allow_empty)


def check_agent_id(value: Any, where: str = "agent_id") -> str:
    """Agent ids travel in URL paths: 1 to 64 letters, digits, ``.``, ``_`` or ``-``."""
    text = check_text(value, where, max_len=MAX_AGENT_ID)
    if not AGENT_ID_RE.match(text):
        raise bad_request(f"{where} {text!r} is malformed: use 1 to {MAX_AGENT_ID} letters, digits, "
                          "'.', '_' or '-' (a UUID is best)")
    return text


def parse_register(body: dict[str, Any]) -> AgentRegistration:
    agent = _object(body, "agent", "agent")
    if agent.get("agent_id") is None:
        raise bad_request("agent.agent_id is required")
    agent_id = check_agent_id(agent["agent_id"], "agent.agent_id")
    agent_type = _optional_text(agent, "agent_type", "agent")
    if agent_type is not None and agent_type not in AGENT_TYPES:
        raise bad_request(f"agent.agent_type must be one of {', '.join(AGENT_TYPES)}, got {agent_type!r}")
    return AgentRegistration(
        agent_id=agent_id,
        host_name=_required_text(agent, "host_name", "agent"),
        host_ip=_required_text(agent, "host_ip", "agent"),
        host_os=_required_text(agent, "host_os", "agent"),
        agent_version=_optional_text(agent, "agent_version", "agent"),
        agent_type=agent_type,
        host_nickname=_optional_text(agent, "host_nickname", "agent", allow_empty=True),
    )


def parse_update(body: dict[str, Any]) -> str:
    agent = _object(body, "agent", "agent")
    if agent.get("status") is None:
        raise bad_request("agent.status is required")
    status = check_text(agent["status"], "agent.status")
    if status != "uninstall":
        raise bad_request(f"agent.status can only be set to 'uninstall', got {status!r}")
    return status


def _string_list(value: Any, where: str, *, max_items: int, allow_empty: bool = False) -> list[Any]:
    if not isinstance(value, list):
        raise bad_request(f"{where} must be an array of strings, got {json_type(value)}")
    if not value and not allow_empty:
        raise bad_request(f"{where} must not be empty")
    if len(value) > max_items:
        raise bad_request(f"{where} has {len(value)} entries; at most {max_items} per request")
    return value


def _path(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise bad_request(f"{where} must be a string, got {json_type(value)}")
    try:
        path = normalize_path(value)
    except PathRuleError as exc:
        raise bad_request(f"{where}: {exc}") from None
    return check_text(path, where, max_len=4096)


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


@dataclass(frozen=True)
class AddPaths:
    """Normalized add-path request: the paths in order, and new excludes for some of them."""

    paths: tuple[str, ...]
    excludes: dict[str, tuple[str, ...]]


def parse_add_path(body: dict[str, Any]) -> AddPaths:
    if body.get("add_path") is None:
        raise bad_request("add_path is required")
    raw = _string_list(body["add_path"], "add_path", max_items=MAX_PATHS_PER_REQUEST)
    paths = _unique(_path(item, f"add_path[{i}]") for i, item in enumerate(raw))
    excludes: dict[str, list[str]] = {}
    entries = body.get("exclude_path")
    if entries is None:
        entries = []
    if not isinstance(entries, list):
        raise bad_request(f"exclude_path must be an array of objects, got {json_type(entries)}")
    for i, entry in enumerate(entries):
        where = f"exclude_path[{i}]"
        if not isinstance(entry, dict):
            raise bad_request(f"{where} must be an object, got {json_type(entry)}")
        if entry.get("path_name") is None:
            raise bad_request(f"{where}.path_name is required")
        root = _path(entry["path_name"], f"{where}.path_name")
        if root not in paths:
            raise bad_request(f"{where}.path_name {root!r} is not one of the paths in add_path")
        names = entry.get("exclude_path_name")
        names = [] if names is None else _string_list(
            names, f"{where}.exclude_path_name", max_items=MAX_EXCLUDES_PER_PATH, allow_empty=True)
        bucket = excludes.setdefault(root, [])
        for j, name in enumerate(names):
            item = f"{where}.exclude_path_name[{j}]"
            if not isinstance(name, str):
                raise bad_request(f"{item} must be a string, got {json_type(name)}")
            try:
                bucket.append(check_text(normalize_exclude(root, name), item, max_len=4096))
            except PathRuleError as exc:
                raise bad_request(f"{item}: {exc}") from None
    return AddPaths(tuple(paths), {k: tuple(_unique(v)) for k, v in excludes.items()})


def parse_remove_path(body: dict[str, Any]) -> tuple[str, ...]:
    if body.get("remove_path") is None:
        raise bad_request("remove_path is required")
    raw = _string_list(body["remove_path"], "remove_path", max_items=MAX_PATHS_PER_REQUEST)
    return tuple(_unique(_path(item, f"remove_path[{i}]") for i, item in enumerate(raw)))


@dataclass(frozen=True)
class ListQuery:
    agent_ids: tuple[str, ...] = ()
    status: str | None = None
    limit: int = DEFAULT_LIMIT
    offset: int = 0


def _integer(value: str, name: str, *, low: int, high: int | None = None) -> int:
    text = value.strip()
    if not text.isdigit() or not text.isascii():
        raise bad_request(f"{name} must be a non-negative integer, got {value[:40]!r}")
    bound = f"from {low} to {high}" if high is not None else f"at least {low}"
    if len(text) > 20:  # int() of 4,301 digits raises ValueError (a 500), and no bound is that long
        raise bad_request(f"{name} must be {bound}, got a number of {len(text)} digits")
    number = int(text)
    if number < low or (high is not None and number > high):
        raise bad_request(f"{name} must be {bound}, got {number}")
    return number


def parse_list_query(pairs: Iterable[tuple[str, str]]) -> ListQuery:
    """The list call's query: ``agent_id`` repeated (or comma-joined), ``status``, ``limit``
    (a string on the wire, 1 to 1000, default 1000) and ``offset`` (default 0)."""
    agent_ids: list[str] = []
    status: str | None = None
    limit, offset = DEFAULT_LIMIT, 0
    for key, value in pairs:
        if key == "agent_id":
            agent_ids += [check_agent_id(v, "agent_id") for v in value.split(",") if v]
            if len(agent_ids) > MAX_LIMIT:
                raise bad_request(f"agent_id: at most {MAX_LIMIT} ids per query")
        elif key == "status":
            if value not in AGENT_STATUSES:
                raise bad_request(f"status must be one of {', '.join(AGENT_STATUSES)}, got {value!r}")
            status = value
        elif key == "limit":
            limit = _integer(value, "limit", low=1, high=MAX_LIMIT)
        elif key == "offset":
            offset = _integer(value, "offset", low=0, high=MAX_OFFSET)
    return ListQuery(tuple(_unique(agent_ids)), status, limit, offset)
