"""The server-rendered SVG charts, checked as markup."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from taskledger.web.charts import Bucket, stacked_bars

SVG = "{http://www.w3.org/2000/svg}"


def test_bars_stack_each_series_and_say_what_they_show() -> None:
    buckets = [
        Bucket("Mon", {"completed": 3, "failed": 1}),
        Bucket("Tue", {}),
        Bucket("Wed", {"completed": 6, "weird": 2}),
    ]
    svg = ET.fromstring(str(stacked_bars(buckets, series=["completed", "failed"], title="Runs")))
    assert svg.get("role") == "img" and "12 runs in 3 intervals" in (svg.get("aria-label") or "")
    bars = svg.findall(f"{SVG}g")
    assert len(bars) == 3
    titles = [bar.findtext(f"{SVG}title") for bar in bars]
    assert titles == [
        "Mon: 4 runs (completed 3, failed 1)",
        "Tue: 0 runs",
        "Wed: 8 runs (completed 6, other 2)",
    ]
    heights = {
        rect.get("class"): float(rect.get("height") or 0) for rect in bars[2].findall(f"{SVG}rect")
    }
    # The tallest bar fills the plot; its segments are in proportion to their counts.
    assert heights["s-completed"] == 3 * heights["s-other"]
    assert bars[1].findall(f"{SVG}rect") == []


def test_labels_are_escaped() -> None:
    svg = str(stacked_bars([Bucket("<b>", {"x": 1})], series=["x"], title="a & b"))
    assert "<b>" not in svg and "&lt;b&gt;" in svg and "a &amp; b" in svg
    ET.fromstring(svg)
