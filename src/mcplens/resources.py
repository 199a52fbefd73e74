"""CPU and memory of this process, read from the standard library at health-record time.

The guide asks for memory and CPU "during high tool call volume": each health record carries
both, next to the call counters, so the reading side can set one against the other. No psutil:
``resource`` gives CPU time everywhere on POSIX, ``/proc/self/statm`` the current RSS on Linux
(elsewhere the peak RSS stands in).
"""

from __future__ import annotations

import os
import sys
import time

try:
    import resource as _resource
except ImportError:  # pragma: no cover - Windows
    _resource = None  # type: ignore[assignment]

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
STARTED = time.time()


def rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        pass
    if _resource is None:
        return None
    peak = _resource.getrusage(_resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def cpu_seconds() -> float | None:
    if _resource is None:
        return None
    usage = _resource.getrusage(_resource.RUSAGE_SELF)
    return round(usage.ru_utime + usage.ru_stime, 3)


def sample() -> dict[str, float | int | None]:
    """CPU seconds used so far, resident memory now, and when the process started (epoch s)."""
    return {"cpu": cpu_seconds(), "rss": rss_bytes(), "started": STARTED}
