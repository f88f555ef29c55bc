"""The one place that turns settings into a control plane: HTTP when an endpoint is set, else embedded."""

from __future__ import annotations

from pathlib import Path

from cbr_agent.api.models import ControlPlane
from cbr_agent.config import Settings
from cbr_agent.errors import ConfigError

EMBEDDED_DB = "controlplane.db"
#: DESIGN decision 1: an agent is abnormal after this many heartbeat intervals of silence
STALE_HEARTBEATS = 3.0


def embedded_db_path(settings: Settings) -> Path:
    return settings.state_dir / EMBEDDED_DB


def describe_endpoint(settings: Settings) -> str:
    """The endpoint for humans: the URL, or where the embedded control plane keeps its database."""
    return settings.endpoint or f"embedded ({embedded_db_path(settings)})"


def open_control_plane(settings: Settings, *, max_attempts: int | None = None) -> ControlPlane:
    """A control plane for ``settings``; ``max_attempts`` bounds the HTTP client's own retries."""
    if settings.endpoint:
        return _http(settings, max_attempts)
    from cbr_agent.agent.statefile import ensure_dir
    from cbr_agent.controlplane.embedded import EmbeddedControlPlane

    ensure_dir(settings.state_dir)
    return EmbeddedControlPlane(embedded_db_path(settings), settings.project_id,
                                stale_after=STALE_HEARTBEATS * settings.heartbeat_interval)


def _http(settings: Settings, max_attempts: int | None) -> ControlPlane:
    from cbr_agent.api.client import HttpControlPlane

    if not (settings.token or (settings.ak and settings.sk)):
        raise ConfigError(
            f"endpoint {settings.endpoint} is set but no credentials are configured",
            hint="set ak and sk (CBR_AGENT_AK, CBR_AGENT_SK or credentials_file) or a token "
            "(CBR_AGENT_TOKEN or token_file)")
    if settings.ak and not settings.sk and not settings.token:
        raise ConfigError("ak is set without sk", hint="set CBR_AGENT_SK, sk_file or credentials_file")
    verify: bool | str = settings.tls_verify
    if settings.tls_verify and settings.ca_bundle:
        if not Path(settings.ca_bundle).is_file():
            raise ConfigError(f"key 'ca_bundle': {settings.ca_bundle} is not a file",
                              hint="point ca_bundle at a PEM file of CA certificates")
        verify = settings.ca_bundle
    kwargs: dict[str, object] = {}
    if max_attempts is not None:
        kwargs["max_attempts"] = max_attempts
    use_aksk = bool(settings.ak and settings.sk)
    return HttpControlPlane(
        settings.endpoint or "",
        settings.project_id,
        ak=settings.ak if use_aksk else None,
        sk=settings.sk if use_aksk else None,
        token=None if use_aksk else settings.token,
        security_token=settings.security_token if use_aksk else None,
        verify=verify,
        timeout=settings.request_timeout,
        **kwargs,
    )
