"""The agent's identity: a UUID generated once and kept in the state dir with the host's machine id.

DESIGN decision 2: a changed machine id (a VM cloned from an image that already carried an agent) gets a
new agent id, logged with the reason, so that two clones never heartbeat as one agent. A pinned id
(``--agent-id`` / ``agent_id``) wins over both.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from cbr_agent.agent.statefile import CorruptStateFile, read_json, set_aside, write_json

log = logging.getLogger(__name__)

IDENTITY_FILE = "identity.json"
#: where Linux keeps the machine id (systemd first, then D-Bus's older copy)
MACHINE_ID_FILES: Sequence[str] = ("/etc/machine-id", "/var/lib/dbus/machine-id")


@dataclass(frozen=True)
class Identity:
    agent_id: str
    machine_id: str | None
    #: why this id is in use: 'stored', 'new', 'machine-id-changed', 'pinned', 'recovered'
    reason: str


def read_machine_id(paths: Sequence[str] | None = None) -> str | None:
    """A fingerprint of the host's machine id, or None where there is none (some containers).

    systemd asks that the machine id itself stay confidential, so only an application-specific hash
    of it is stored and logged (the idea of sd_id128_get_machine_app_specific).
    """
    for candidate in MACHINE_ID_FILES if paths is None else paths:
        try:
            text = Path(candidate).read_text(encoding="ascii", errors="replace").strip()
        except OSError:
            continue
        if text and text != "uninitialized":
            return hashlib.sha256(b"cbr-agent machine id:" + text.encode()).hexdigest()[:32]
    return None


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _save(path: Path, agent_id: str, machine_id: str | None) -> None:
    write_json(path, {"agent_id": agent_id, "machine_id": machine_id, "created_at": _now()})


def _stored(path: Path) -> tuple[str, str | None] | None:
    try:
        data = read_json(path)
    except CorruptStateFile as exc:
        kept = set_aside(path)
        log.warning("%s; a new agent id is generated (the damaged file is kept as %s)", exc, kept)
        return None
    if data is None:
        return None
    try:
        agent_id = str(uuid.UUID(str(data.get("agent_id"))))
    except ValueError:
        kept = set_aside(path)
        log.warning("identity file %s holds no valid agent id; a new one is generated "
                    "(the damaged file is kept as %s)", path, kept)
        return None
    machine_id = data.get("machine_id")
    return agent_id, machine_id if isinstance(machine_id, str) else None


def load_identity(state_dir: Path, *, pinned: str | None = None,
                  machine_id_files: Sequence[str] | None = None) -> Identity:
    """The agent id to use, creating or replacing the identity file as the rules above say."""
    path = state_dir / IDENTITY_FILE
    machine_id = read_machine_id(machine_id_files)
    stored = _stored(path)
    if pinned is not None:
        if stored is None or stored != (pinned, machine_id):
            if stored is not None and stored[0] != pinned:
                log.info("using the pinned agent id %s instead of %s kept in the state dir",
                         pinned, stored[0])
            _save(path, pinned, machine_id)
        return Identity(pinned, machine_id, "pinned")
    if stored is not None:
        agent_id, stored_machine = stored
        if stored_machine == machine_id or stored_machine is None or machine_id is None:
            if stored_machine != machine_id:  # learn a machine id that became readable
                _save(path, agent_id, machine_id)
            return Identity(agent_id, machine_id, "stored")
        new_id = str(uuid.uuid4())
        log.warning("the machine id changed since agent id %s was made, so this is another host "
                    "(a cloned image?): using the new agent id %s", agent_id, new_id)
        _save(path, new_id, machine_id)
        return Identity(new_id, machine_id, "machine-id-changed")
    new_id = str(uuid.uuid4())
    _save(path, new_id, machine_id)
    log.info("generated agent id %s", new_id)
    return Identity(new_id, machine_id, "new")


def peek_agent_id(state_dir: Path) -> str | None:
    """The stored agent id without creating or changing anything (for ``status``)."""
    try:
        data = read_json(state_dir / IDENTITY_FILE)
    except CorruptStateFile:
        return None
    if not data:
        return None
    value = data.get("agent_id")
    return str(value) if value else None
