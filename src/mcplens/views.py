"""The rows every front end shows: one function per CLI command, returning JSON-able lists and dicts.

``mcplens <command> --json`` prints exactly what these return, the text CLI formats the same rows,
and the dashboard serves them under ``/api/...``: one shaping, so API = CLI ``--json``.

Layer: above the store and the analysis, below the front ends (cli/, dashboard/). Nothing here
prints or escapes: rows carry event strings as recorded, and each front end escapes them for its
terminal or page (:mod:`mcplens.safetext`, HTML escaping).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from mcplens.store.base import Store, TimeWindow


class NoSuchSession(LookupError):
    """No session id starts with the given prefix."""


class AmbiguousSession(LookupError):
    """The prefix matches several sessions; ``matches`` lists them (sorted)."""

    def __init__(self, prefix: str, matches: list[str]) -> None:
        super().__init__(prefix, matches)
        self.prefix = prefix
        self.matches = matches


def compact_event(row: dict[str, Any]) -> dict[str, Any]:
    """An event without its empty columns (most columns are NULL for any one event)."""
    return {k: v for k, v in row.items() if v is not None}


def tools(
    store: Store,
    window: TimeWindow | None = None,
    *,
    server: str | None = None,
    tool: str | None = None,
    sort: str = "calls",
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """``mcplens report``: one row per (server, method, target), largest ``sort`` first."""
    rows = store.tool_table(window, server, tool, sort)
    return rows if limit is None else rows[:limit]


def sessions(
    store: Store, window: TimeWindow | None = None, *, server: str | None = None, limit: int | None = 50
) -> list[dict[str, Any]]:
    """``mcplens sessions``: one row per session, most recently active first."""
    return store.sessions(window, server, limit)


def session(store: Store, session_id: str) -> list[dict[str, Any]]:
    """``mcplens sessions ID``: the events of the one session whose id starts with ``session_id``.

    Raises :class:`NoSuchSession` or :class:`AmbiguousSession` (a prefix of several sessions).
    """
    events = store.session_events(session_id)
    matched = sorted({e["session"] for e in events})
    if not matched:
        raise NoSuchSession(session_id)
    if len(matched) > 1:
        raise AmbiguousSession(session_id, matched)
    return [compact_event(e) for e in events]


def tail(
    store: Store, since: float = 0.0, *, limit: int | None = None, server: str | None = None
) -> list[dict[str, Any]]:
    """``mcplens tail``: events (health records excluded) that started after ``since``, oldest first;
    with ``limit``, the newest ``limit`` of them."""
    return [compact_event(e) for e in store.events_since(since, limit, server=server)]


def health(store: Store, window: TimeWindow | None = None) -> list[dict[str, Any]]:
    """``mcplens health``: the latest counters of each capturing process."""
    return store.health(window)


def insights(
    store: Store,
    window: TimeWindow | None = None,
    *,
    server: str | None = None,
    options: Any = None,
    min_severity: str = "info",
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """``mcplens insights``: findings most severe first (``options``: an ``analysis.Options``)."""
    from mcplens.analysis import insights as run_insights
    from mcplens.analysis.findings import RANK

    found = run_insights(store, options, since=None if window is None else window.since,
                         until=None if window is None else window.until, server=server)
    found = [f for f in found if RANK[f.severity] >= RANK[min_severity]]
    if limit is not None:
        found = found[:limit]
    return [f.to_dict() for f in found]


def compact(store: Store) -> dict[str, Any]:
    """``mcplens compact``: what one compaction did."""
    result = store.compact()
    return {**asdict(result), "batches": list(result.batches)}


def check(home: Path, *, fix: bool = False) -> dict[str, Any]:
    """``mcplens check``: the unreadable files of a local data directory (moved aside with ``fix``)."""
    from mcplens.store.local.check import check as run_check

    return run_check(home, fix=fix).to_dict()
