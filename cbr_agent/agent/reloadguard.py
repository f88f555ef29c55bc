"""Which SIGHUP reloads the daemon refuses: a config-management tool that fails half-way leaves an empty
or partial file, and a daemon that took it would silently switch control planes (to the embedded one
when the endpoint is gone), lose its agent or its schedule, and stop backing up.

A reload that would change the endpoint, the project or the pinned agent id is refused unless the new
configuration says ``allow_reload_identity_change = true``; a config file with no keys at all that would
change anything is refused always (to run on the defaults on purpose, restart the daemon).
"""

from __future__ import annotations

import dataclasses

from cbr_agent.agent.connect import describe_endpoint
from cbr_agent.config import Settings, read_config_file
from cbr_agent.errors import ConfigError


def identity_changes(old: Settings, new: Settings, agent_id: str) -> list[str]:
    """What the reload would change of who this agent is and where it reports, for humans."""
    changes: list[str] = []
    if (old.endpoint or None) != (new.endpoint or None):
        changes.append(f"endpoint {describe_endpoint(old)} -> {describe_endpoint(new)}")
    if old.project_id != new.project_id:
        changes.append(f"project_id {old.project_id} -> {new.project_id}")
    if new.agent_id is not None and new.agent_id != agent_id:
        changes.append(f"agent_id {agent_id} -> {new.agent_id}")
    return changes


def refusal(old: Settings, new: Settings, agent_id: str) -> str | None:
    """Why the daemon must keep ``old`` instead of ``new``; None when the reload may go ahead."""
    if _empty_file(new) and dataclasses.replace(new, state_dir=old.state_dir) != old:
        return (f"{new.config_file} has no settings at all (a failed write?); restart the daemon to run "
                "on the defaults")
    changes = identity_changes(old, new, agent_id)
    if changes and not new.allow_reload_identity_change:
        return (f"it would change {', '.join(changes)}; if that is intended, set "
                "allow_reload_identity_change = true in the new file and send SIGHUP again "
                "(or restart the daemon)")
    return None


def _empty_file(settings: Settings) -> bool:
    try:
        return not read_config_file(settings.config_file, required=False)
    except ConfigError:  # unreadable now: the reload itself read it a moment ago; not "empty"
        return False
