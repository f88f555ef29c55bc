"""What the CBR parts of the control plane share: their error codes, field checks and wire times.

Error codes are the reference's (spec/auth-and-errors.md, section 3): a 404 names what is missing
with its own ``BackupService.*`` code, a bad request is 400 with the most specific code there is.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from typing import Any

from cbr_agent.controlplane.faults import bad_request
from cbr_agent.controlplane.validation import check_text, json_type
from cbr_agent.errors import ApiError, NotFoundError

VAULT_NOT_FOUND = "BackupService.6105"
POLICY_NOT_FOUND = "BackupService.6000"
BACKUP_NOT_FOUND = "BackupService.6200"
CHECKPOINT_NOT_FOUND = "BackupService.6217"
OPLOG_NOT_FOUND = "BackupService.6500"
TASK_NOT_FOUND = "BackupService.6501"
RESOURCE_NOT_FOUND = "BackupService.6302"
ALREADY_IN_VAULT = "BackupService.6103"
DUPLICATE_RESOURCES = "BackupService.6104"
NOT_IN_VAULT = "BackupService.6135"
UNSUPPORTED_TYPE = "BackupService.6116"
BAD_CAPACITY = "BackupService.6101"
POLICY_NOT_APPLIED = "BackupService.6002"
UNKNOWN_POLICY_TYPE = "BackupService.6117"
NOTHING_TO_BACK_UP = "BackupService.0001"
CANNOT_DELETE = "BackupService.6201"
RESTORE_NOT_ALLOWED = "BackupService.2005"
#: our extension: the task is no longer this caller's (its lease lapsed and another claim took it,
#: or it ended); the agent must stop working on it
LEASE_LOST = "BackupService.6203"

NAME_RE = re.compile(r"[A-Za-z0-9_-]{1,64}\Z")
ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
AGENT_RESOURCE_TYPE = "OS::Native::Server"


def not_found(code: str, what: str, ident: str) -> NotFoundError:
    return NotFoundError(404, code, f"{what} {ident!r} does not exist")


def invalid(code: str, message: str) -> ApiError:
    return ApiError(400, code, message)


def wire_time(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat(timespec="milliseconds")


def query_time(value: str, name: str) -> int:
    """``YYYY-MM-DDTHH:MM:SSZ`` (or any ISO 8601 time; no zone means UTC) as milliseconds."""
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise bad_request(f"{name} must look like 2024-05-01T12:00:00Z, got {value!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return int(parsed.timestamp() * 1000)


def obj(parent: dict[str, Any], key: str, where: str, *, required: bool = True) -> dict[str, Any]:
    value = parent.get(key)
    if value is None:
        if required:
            raise bad_request(f"{where} is required")
        return {}
    if not isinstance(value, dict):
        raise bad_request(f"{where} must be an object, got {json_type(value)}")
    return value


def text(
    data: dict[str, Any],
    key: str,
    where: str,
    *,
    required: bool = False,
    max_len: int = 255,
    allow_empty: bool = False,
) -> str | None:
    if data.get(key) is None:
        if required:
            raise bad_request(f"{where}.{key} is required")
        return None
    return check_text(data[key], f"{where}.{key}", max_len=max_len, allow_empty=allow_empty)


def name(data: dict[str, Any], key: str, where: str, *, required: bool) -> str | None:
    value = text(data, key, where, required=required, max_len=64)
    if value is not None and not NAME_RE.match(value):
        raise bad_request(f"{where}.{key} {value!r}: use 1 to 64 letters, digits, '_' or '-'")
    return value


def description(data: dict[str, Any], where: str) -> str:
    value = text(data, "description", where, allow_empty=True) or ""
    if "<" in value or ">" in value:
        raise bad_request(f"{where}.description must not contain '<' or '>'")
    return value


def boolean(data: dict[str, Any], key: str, where: str, default: bool) -> bool:
    value = data.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise bad_request(f"{where}.{key} must be true or false, got {json_type(value)}")
    return value


def integer(
    data: dict[str, Any],
    key: str,
    where: str,
    *,
    low: int,
    high: int,
    default: int | None = None,
    code: str | None = None,
) -> int | None:
    value = data.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        message = f"{where}.{key} must be an integer from {low} to {high}, got {value!r}"
        raise invalid(code, message) if code else bad_request(message)
    return value


def ident(value: Any, where: str) -> str:
    """An id from a body or a path: what our ids and agent ids look like, else 400 (not 404)."""
    checked = check_text(value, where, max_len=64)
    if not ID_RE.match(checked):
        raise bad_request(f"{where} {checked!r} is malformed")
    return checked


def id_list(value: Any, where: str, *, max_items: int, allow_empty: bool = False) -> list[str]:
    if not isinstance(value, list):
        raise bad_request(f"{where} must be an array, got {json_type(value)}")
    if not value and not allow_empty:
        raise bad_request(f"{where} must not be empty")
    if len(value) > max_items:
        raise bad_request(f"{where} has {len(value)} entries; at most {max_items}")
    items = [ident(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if len(set(items)) != len(items):
        raise invalid(DUPLICATE_RESOURCES, f"{where} lists an id twice")
    return items


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def page_args(pairs: dict[str, str], *, default_limit: int = 1000) -> tuple[int, int]:
    from cbr_agent.controlplane.validation import MAX_OFFSET, _integer

    limit = _integer(pairs["limit"], "limit", low=1, high=1000) if "limit" in pairs else default_limit
    offset = _integer(pairs["offset"], "offset", low=0, high=MAX_OFFSET) if "offset" in pairs else 0
    return limit, offset
