"""check --read-data-subset: N/M slices partition the packs; P% picks that share; bad specs refused."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cbr_agent.repository.check import PackSubset

pack_ids = st.lists(st.text("0123456789abcdef", min_size=64, max_size=64), unique=True, max_size=60)


@settings(max_examples=200, deadline=None)
@given(packs=pack_ids, m=st.integers(1, 12))
def test_the_m_slices_read_every_pack_exactly_once(packs: list[str], m: int) -> None:
    table = {p: [] for p in packs}
    chosen = [set(PackSubset(f"{n}/{m}").choose(table)) for n in range(1, m + 1)]
    assert sum(len(c) for c in chosen) == len(packs)
    assert set().union(*chosen) == set(packs)


@settings(max_examples=200, deadline=None)
@given(packs=pack_ids, percent=st.floats(min_value=0.01, max_value=100, allow_nan=False))
def test_a_percentage_reads_that_share_rounded_up(packs: list[str], percent: float) -> None:
    chosen = PackSubset(f"{percent}%").choose({p: [] for p in packs})
    assert len(chosen) == min(len(packs), math.ceil(len(packs) * percent / 100))
    assert set(chosen) <= set(packs)


@pytest.mark.parametrize("bad", ["", "x", "0/3", "4/3", "1/0", "-1/2", "1/2/3", "0%", "101%", "%", "a%",
                                 "nan%"])
def test_bad_specs_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="not N/M"):
        PackSubset(bad)
