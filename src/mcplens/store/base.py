"""The reading side's one interface, so the CLI works unchanged over the local files or PostgreSQL.

Every method returns plain lists of dicts keyed by the friendly column names below: they print as
JSON as they are, and no backend's row type leaks into the CLI.
"""

from __future__ import annotations

import json
import re
import time
from abc import ABC, abstractmethod
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

from mcplens import event as ev

if TYPE_CHECKING:
    from mcplens.store.source import AnalysisSource

#: Event keys whose friendly name is not simply the key with ``mcplens.`` dropped and dots as ``_``.
_RENAMES: Final[dict[str, str]] = {
    ev.EVENT_KIND: "kind",
    ev.SCHEMA: "schema_version",
    ev.METHOD: "method",
    ev.TARGET: "target",
    ev.TOOL_NAME: "tool",
    ev.PROMPT_NAME: "prompt",
    ev.RESOURCE_URI: "resource_uri",
    ev.OPERATION: "operation",
    ev.REQUEST_SIZE: "request_size",
    ev.REQUEST_ID: "request_id",
    ev.RPC_CODE: "rpc_code",
    ev.RESPONSE_SIZE: "response_size",
    ev.RESPONSE_TOKENS: "response_tokens",
    ev.RESPONSE_ITEMS: "response_items",
    ev.RESPONSE_TYPES: "content_types",
    ev.SESSION_ID: "session_id",
    ev.TRANSPORT: "transport",
    ev.PROTOCOL_VERSION: "protocol_version",
    ev.PID: "pid",
}


def friendly_name(key: str) -> str:
    """Derived by rule, with a few renames, so a field added to ``event.COLUMNS`` gets a name for free."""
    if key in _RENAMES:
        return _RENAMES[key]
    return key.removeprefix("mcplens.").replace(".", "_")


#: friendly name -> (event key, DuckDB type), in ``event.COLUMNS`` order
FIELDS: Final[dict[str, tuple[str, str]]] = {friendly_name(k): (k, t) for k, t in ev.COLUMNS.items()}

#: statuses that are not the server failing: the one definition lives in event.py
NOT_ERRORS: Final = ev.NOT_FAILURES

SORTS: Final = ("calls", "errors", "error_rate", "p50", "p95", "p99", "mean", "payload", "tokens")

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


@dataclass(frozen=True)
class CompactResult:
    batches: tuple[str, ...]  # Parquet batches written; empty when there was nothing to do
    segments: int  # segment files folded in
    events: int  # events written to Parquet
    removed: int  # leftover files cleaned up (sources of an earlier, interrupted compaction)
    busy: bool = False  # another compaction held the lock; nothing was done
    rolled_up: int = 0  # earlier batches given (new) rollups for the insights


#: --sort name -> the row field it orders by (largest first)
_SORT_FIELD: Final = {
    "calls": "calls",
    "errors": "errors",
    "error_rate": "error_rate",
    "p50": "p50_ms",
    "p95": "p95_ms",
    "p99": "p99_ms",
    "mean": "mean_ms",
    "payload": "payload_p95_bytes",
    "tokens": "tokens_p95",
}


def sort_tool_rows(rows: list[dict[str, Any]], sort: str = "calls") -> list[dict[str, Any]]:
    """Largest first, rows without a value last, then by calls and name so the order is stable."""
    if sort not in _SORT_FIELD:
        raise ValueError(f"unknown sort {sort!r}; choose from {', '.join(SORTS)}")
    key = _SORT_FIELD[sort]
    return sorted(
        rows,
        key=lambda r: (r[key] is None, -(r[key] or 0), -r["calls"], r["name"] or "", r["server"] or ""),
    )


def shape_event(row: dict[str, Any]) -> dict[str, Any]:
    """JSON columns come back from the database as text; callers want the object."""
    args = row.get("request_args")
    if isinstance(args, str):
        try:
            row["request_args"] = json.loads(args)
        except ValueError:
            pass
    return row


class Store(ABC):
    """Read access to recorded events. Rows are dicts keyed by friendly column names."""

    @abstractmethod
    def tool_table(
        self,
        window: TimeWindow | None = None,
        server: str | None = None,
        tool: str | None = None,
        sort: str = "calls",
    ) -> list[dict[str, Any]]:
        """One row per (server, method, target): calls, errors, latency/payload/token percentiles."""

    @abstractmethod
    def events_since(self, ts: float, limit: int | None = None, *, server: str | None = None) -> list[dict[str, Any]]:
        """Events (health records excluded) starting after ``ts``, oldest first; the newest ``limit``
        of those from ``server`` when one is named (filtered before the cut)."""

    @abstractmethod
    def sessions(
        self, window: TimeWindow | None = None, server: str | None = None, limit: int | None = 50
    ) -> list[dict[str, Any]]:
        """One row per session, most recently active first."""

    @abstractmethod
    def session_events(self, session_id: str) -> list[dict[str, Any]]:
        """Events of every session whose id starts with ``session_id``, in time order."""

    @abstractmethod
    def health(self, window: TimeWindow | None = None) -> list[dict[str, Any]]:
        """The latest pipeline health record of each instance (counters are per-process totals),
        with ``events``: the audit events that instance recorded."""

    @abstractmethod
    def count(self) -> int:
        """Every stored record, health records included."""

    @abstractmethod
    def compact(self) -> CompactResult:
        """Fold finished raw segments into columnar storage; safe to run while others read."""

    @abstractmethod
    def analysis_source(
        self, window: TimeWindow | None = None, server: str | None = None
    ) -> AbstractContextManager[AnalysisSource]:
        """What the detectors read over ``window`` (and ``server``): DuckDB SQL over ``events`` plus the
        rollup tables (see :mod:`mcplens.store.source`); valid until the block ends."""
