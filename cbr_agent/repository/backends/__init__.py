"""Backends behind the one :class:`~cbr_agent.repository.backend.Backend` interface, and how a
repository URL becomes one.

- a path or ``file:///...``: :class:`~cbr_agent.repository.backend.DirectoryBackend`
- ``s3://BUCKET/PREFIX``: :class:`~cbr_agent.repository.backends.s3.S3Backend` (the optional ``s3`` extra)
- :class:`~cbr_agent.repository.backends.memory.MemoryBackend` and
  :class:`~cbr_agent.repository.backends.faulty.FaultyBackend` for tests (never chosen by a URL)
- :class:`~cbr_agent.repository.backends.limit.LimitedBackend` wraps any of them when a bandwidth limit
  is set.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from cbr_agent.repository.backend import Backend, DirectoryBackend, path_from_url

DEFAULT_S3_CONNECTIONS = 4
DEFAULT_S3_RETRIES = 8


@dataclass(frozen=True)
class BackendOptions:
    """What opening a backend needs beyond its URL (from the configuration: ``s3_*``, ``limit_*``)."""

    s3_endpoint: str | None = None
    s3_region: str | None = None
    s3_path_style: bool = False
    s3_connections: int = DEFAULT_S3_CONNECTIONS
    s3_ca_bundle: str | None = None
    s3_tls_verify: bool = True
    s3_retries: int = DEFAULT_S3_RETRIES
    s3_access_key_id: str | None = None
    s3_secret_access_key: str | None = None
    s3_session_token: str | None = None
    limit_upload: float = 0.0  # KiB/s, 0 = unlimited
    limit_download: float = 0.0

    @classmethod
    def from_settings(cls, settings: Any) -> BackendOptions:
        """From a :class:`cbr_agent.config.Settings` (or anything with those attributes); unset = default."""
        values = {}
        for f in fields(cls):
            value = getattr(settings, f.name, None)
            if value is not None:
                values[f.name] = value
        return cls(**values)

    def __repr__(self) -> str:  # never show a secret
        shown = {f.name: getattr(self, f.name) for f in fields(self)
                 if f.name not in ("s3_secret_access_key", "s3_session_token")}
        return f"BackendOptions({shown})"


def is_s3_url(url: str) -> bool:
    return url.startswith("s3://")


def open_backend(url: str, options: BackendOptions | None = None) -> Backend:
    """The backend a repository URL names, wrapped in a bandwidth limit when one is set."""
    options = options or BackendOptions()
    backend: Backend
    if is_s3_url(url):
        from cbr_agent.repository.backends.s3 import S3Backend

        backend = S3Backend.from_url(url, options)
    else:
        backend = DirectoryBackend(path_from_url(url))
    if options.limit_upload > 0 or options.limit_download > 0:
        from cbr_agent.repository.backends.limit import LimitedBackend

        backend = LimitedBackend(backend, upload_kib=options.limit_upload,
                                 download_kib=options.limit_download)
    return backend


__all__ = ["Backend", "BackendOptions", "is_s3_url", "open_backend"]
