"""Fixtures for engine tests: an isolated configuration, a fresh repository with small chunks."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cbr_agent.chunking import ChunkerParams
from cbr_agent.config import Settings, load_settings

PASSWORD = "correct horse battery staple"
#: small chunks so that small test files still have several
SMALL_CHUNKS = ChunkerParams(min_size=4096, avg_size=16384, max_size=65536)


@dataclass
class Engine:
    tmp: Path
    state_dir: Path
    config: Path
    repo_path: Path

    def settings(self, **overrides: Any) -> Settings:
        return load_settings(overrides={"state_dir": str(self.state_dir), **overrides})

    def open(self) -> Any:
        from cbr_agent.repository import Repository

        return Repository.open(str(self.repo_path), PASSWORD)

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CBR_AGENT_")}
        env.update(CBR_AGENT_PASSWORD=PASSWORD, CBR_AGENT_CONFIG=str(self.config),
                   CBR_AGENT_INSECURE_TEST_KDF="1", CBR_AGENT_STATE_DIR=str(self.state_dir),
                   CBR_AGENT_REPOSITORY=str(self.repo_path))
        return env

    def cli(self, *args: str, timeout: float = 60, env: dict[str, str] | None = None,
            **kw: Any) -> subprocess.CompletedProcess[str]:
        """``python -m cbr_agent ARGS`` as a real subprocess (``env``: extra variables)."""
        return subprocess.run([sys.executable, "-m", "cbr_agent", *args], env={**self.env(), **(env or {})},
                              capture_output=True, text=True, timeout=timeout, **kw)


@pytest.fixture
def engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Engine:
    from cbr_agent.repository import Repository

    config = tmp_path / "agent.toml"
    config.write_text("")
    eng = Engine(tmp_path, tmp_path / "state", config, tmp_path / "repo")
    for key, value in eng.env().items():
        if key.startswith("CBR_AGENT_"):
            monkeypatch.setenv(key, value)
    Repository.init(str(eng.repo_path), PASSWORD, chunker=SMALL_CHUNKS)
    return eng
