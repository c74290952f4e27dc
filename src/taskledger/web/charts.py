"""Charts as SVG, rendered on the server: no chart library in the browser, and testable as
markup. Used by the Runs page (runs per status over time) and the retention console (ages).

A chart is stacked bars: one bar per bucket, one segment per series. Each bar carries a
``<title>`` (the browser's tooltip) with its numbers, and the whole chart a text summary for
screen readers. Colours come from CSS classes (``s-<series>``), so themes apply to charts too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from html import escape

from markupsafe import Markup

WIDTH = 720
HEIGHT = 200
_LEFT = 44
_BOTTOM = 22
_TOP = 8


@dataclass(frozen=True)
class Bucket:
    """One bar: its label (shown under it when there is room) and a count per series."""

    label: str
    counts: Mapping[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def _ticks(maximum: int) -> list[int]:
    if maximum <= 0:
        return [0]
    step = 1
    while maximum / step > 4:
        for factor in (2, 2.5, 2):
            step = int(step * factor)
            if maximum / step <= 4:
                break
    return list(range(0, maximum + 1, step))


def stacked_bars(
    buckets: Sequence[Bucket], *, series: Sequence[str], title: str, unit: str = "runs"
) -> Markup:
    """An SVG of ``buckets`` as stacked bars, the ``series`` stacked in this order (bottom up).

    Series not in ``series`` are drawn as ``other``."""
    maximum = max((b.total for b in buckets), default=0)
    plot_w = WIDTH - _LEFT - 4
    plot_h = HEIGHT - _TOP - _BOTTOM
    count = max(len(buckets), 1)
    slot = plot_w / count
    bar_w = max(slot * 0.8, 1.0)
    total = sum(b.total for b in buckets)
    summary = f"{title}: {total} {unit} in {len(buckets)} intervals"
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(summary)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(summary)}</title>",
    ]
    for tick in _ticks(maximum):
        y = _TOP + plot_h - (tick / maximum * plot_h if maximum else 0)
        parts.append(
            f'<line class="axis" x1="{_LEFT}" x2="{WIDTH - 4}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text x="{_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{tick}</text>'
        )
    label_every = max(1, round(count / 8))
    known = set(series)
    for index, bucket in enumerate(buckets):
        x = _LEFT + index * slot + (slot - bar_w) / 2
        y = _TOP + plot_h
        counts = dict(bucket.counts)
        other = sum(v for k, v in counts.items() if k not in known)
        detail = ", ".join(f"{name} {counts[name]}" for name in series if counts.get(name))
        if other:
            detail = f"{detail}, other {other}" if detail else f"other {other}"
        parts.append(
            f'<g class="bar"><title>{escape(bucket.label)}: {bucket.total} {unit}'
            f"{' (' + escape(detail) + ')' if detail else ''}</title>"
        )
        for name, value in [(n, counts.get(n, 0)) for n in series] + [("other", other)]:
            if not value or not maximum:
                continue
            height = value / maximum * plot_h
            y -= height
            parts.append(
                f'<rect class="s-{escape(name)}" x="{x:.1f}" y="{y:.1f}" '
                f'width="{bar_w:.1f}" height="{height:.1f}"/>'
            )
        parts.append("</g>")
        if index % label_every == 0:
            parts.append(
                f'<text x="{x + bar_w / 2:.1f}" y="{HEIGHT - 6}" text-anchor="middle">'
                f"{escape(bucket.label)}</text>"
            )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every value is escaped


def legend(series: Sequence[str]) -> Markup:
    """The key of a chart's colours, as a list."""
    items = "".join(f'<li><i class="l-{escape(n)}"></i>{escape(n)}</li>' for n in series)
    return Markup(f'<ul class="legend" aria-hidden="true">{items}</ul>')  # noqa: S704 - every value is escaped
