"""How pages show values: human durations, relative times, timestamps, byte counts.

Registered as Jinja2 filters by :class:`taskledger.web.pages.Pages`.
"""

from __future__ import annotations

from datetime import datetime

from taskledger.store.types import utcnow


def human_duration(milliseconds: int | float | None) -> str:
    """``850 ms``, ``4.2 s``, ``3 min 20 s``, ``2 h 5 min``, ``3 d 4 h``; an em dash for none."""
    if milliseconds is None:
        return "—"
    ms = float(milliseconds)
    if ms < 1000:
        return f"{ms:.0f} ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = int(seconds)
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def ago(moment: datetime | None, now: datetime | None = None) -> str:
    """``just now``, ``3 min ago``, ``2 h ago``, ``5 d ago`` (``in 3 min`` for the future)."""
    if moment is None:
        return "never"
    delta = ((now or utcnow()) - moment).total_seconds()
    future = delta < 0
    seconds = abs(delta)
    if seconds < 45:
        return "just now" if not future else "in a moment"
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60)):
        if seconds >= size:
            amount = round(seconds / size)
            return f"in {amount} {unit}" if future else f"{amount} {unit} ago"
    return "just now"  # pragma: no cover - seconds >= 45 always reaches "min"


def timestamp(moment: datetime | None) -> str:
    """A UTC timestamp to the second, as ``2026-12-02 06:30:00``."""
    return moment.strftime("%Y-%m-%d %H:%M:%S") if moment is not None else "—"


def iso(moment: datetime | None) -> str:
    """ISO 8601, for ``<time datetime=...>`` and for URLs."""
    return moment.isoformat() if moment is not None else ""


def human_bytes(count: int | None) -> str:
    """``512 B``, ``1.5 KiB``, ``3.2 MiB``, ``1.1 GiB``."""
    if count is None:
        return "—"
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"  # pragma: no cover


FILTERS = {
    "duration": human_duration,
    "ago": ago,
    "timestamp": timestamp,
    "iso": iso,
    "bytes": human_bytes,
}
