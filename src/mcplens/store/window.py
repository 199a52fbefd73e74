"""A time window on event start time, and how the CLI's ``--since``/``--until`` words read.

Its own module so both the ``Store`` interface and the analysis source can name it without
importing each other.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import datetime

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d|w)\s*$", re.IGNORECASE)
_UNIT = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_time(text: str, *, now: float | None = None) -> float:
    """``15m`` / ``2h`` / ``3d`` ago, or an ISO timestamp (local time unless it names a zone)."""
    m = _DURATION.match(text)
    if m:
        return (time.time() if now is None else now) - float(m.group(1)) * _UNIT[m.group(2).lower()]
    try:
        return datetime.fromisoformat(text.strip()).timestamp()
    except ValueError:
        raise ValueError(
            f"cannot read time {text!r}: use an age like 30s, 15m, 2h, 3d, 1w or an ISO timestamp "
            "like 2026-11-23T14:00 (add Z or +01:00 for a zone)"
        ) from None


@dataclass(frozen=True)
class TimeWindow:
    """Half-open ``[since, until)`` on event start time; either end may be open."""

    since: float | None = None
    until: float | None = None

    @classmethod
    def parse(cls, since: str | None, until: str | None, *, now: float | None = None) -> TimeWindow | None:
        if since is None and until is None:
            return None
        lo = parse_time(since, now=now) if since is not None else None
        hi = parse_time(until, now=now) if until is not None else None
        if lo is not None and hi is not None and hi <= lo:
            raise ValueError(f"--until ({until}) is not after --since ({since})")
        return cls(lo, hi)
