"""Agent unit tests: never read /etc/cbr-agent or /var/lib/cbr-agent of the machine (CI runs as root)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def not_root(monkeypatch: pytest.MonkeyPatch) -> None:
    import cbr_agent.config as config

    monkeypatch.setattr(config, "is_root", lambda: False)


@pytest.fixture(autouse=True)
def restore_logging():
    """Commands run in-process point the root logger at the test's captured stderr; undo that."""
    import logging

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
