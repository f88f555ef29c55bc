"""The console's CBR helpers: byte sizes, the per-day chart (an SVG with no script and no data from
users), and list links that keep their filters."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from hypothesis import given
from hypothesis import strategies as st

from cbr_agent.controlplane.console.cbr_pages import Day, chart_svg, human_bytes, linker

SVG = "{http://www.w3.org/2000/svg}"


def test_human_bytes() -> None:
    assert human_bytes(0) == "0 B"
    assert human_bytes(1023) == "1023 B"
    assert human_bytes(1024) == "1.0 KiB"
    assert human_bytes(16 * 1024) == "16.0 KiB"
    assert human_bytes(3 * 1024**3) == "3.0 GiB"
    assert human_bytes(5 * 1024**5) == "5120.0 TiB"
    assert human_bytes(None) == "" and human_bytes("x") == ""


@given(st.integers(min_value=0, max_value=2**60))
def test_human_bytes_is_a_number_and_a_unit(n: int) -> None:
    number, unit = human_bytes(n).split(" ")
    assert unit in ("B", "KiB", "MiB", "GiB", "TiB") and float(number) >= 0


@given(st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 10_000)), min_size=1, max_size=31))
def test_chart_is_well_formed_svg_with_bars_in_scale(values: list[tuple[int, int]]) -> None:
    days = [Day(f"12-{i + 1:02d}", made, failed) for i, (made, failed) in enumerate(values)]
    svg = chart_svg(days)
    root = ET.fromstring(svg)  # well formed
    assert "script" not in svg
    rects = root.findall(f"{SVG}rect")
    assert len(rects) == 2 * len(days)
    tallest = max([1, *(v for pair in values for v in pair)])
    for rect, value in zip(rects, (v for pair in values for v in pair), strict=True):
        height = float(rect.get("height"))
        assert 0 <= height <= 160
        assert abs(height - 144 * value / tallest) < 0.06
        assert rect.get("class") in ("ok", "bad")
        assert re.search(rf": {value} (backups|failed)$", rect.find(f"{SVG}title").text)


def test_links_keep_filters_and_drop_defaults() -> None:
    link = linker("/console/backups", {"agent": "a b", "vault": "", "status": "available"})
    assert link() == "/console/backups?agent=a+b&status=available"
    assert link(page=1) == "/console/backups?agent=a+b&status=available"
    assert link(page=3, status="") == "/console/backups?agent=a+b&page=3"
