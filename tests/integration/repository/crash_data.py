"""Deterministic file sets for the crash tests."""

from __future__ import annotations

import random


def files_for(seed: int, count: int) -> dict[str, bytes]:
    rng = random.Random(seed)
    return {f"d{i % 4}/f{seed}_{i}": rng.randbytes(rng.randint(500, 12_000)) for i in range(count)}
