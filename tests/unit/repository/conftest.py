from __future__ import annotations

import pytest

from tests.unit.repository.repo_helpers import init_repo


@pytest.fixture
def repo(tmp_path):
    return init_repo(tmp_path / "repo")
