"""Backends for the conformance suite: directory, memory, and S3 against moto's server on loopback."""

from __future__ import annotations

import pytest

from cbr_agent.repository.backend import DirectoryBackend
from cbr_agent.repository.backends.memory import MemoryBackend

BACKENDS = ["directory", "memory"]


@pytest.fixture(params=BACKENDS)
def any_backend(request, tmp_path):
    backend = DirectoryBackend(tmp_path / "repo") if request.param == "directory" else MemoryBackend()
    backend.create()
    return backend
