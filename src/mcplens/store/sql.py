"""The reading side's SQL vocabulary, defined once: what an error is, what a session is, what a call is about.

All of it is DuckDB SQL over the friendly column names of :data:`mcplens.store.base.FIELDS`, the
one dialect the store and the analysis share (a store that is not DuckDB loads rows into an
in-memory DuckDB, see :mod:`mcplens.store.source`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Final

from mcplens import event as ev
from mcplens.store.window import TimeWindow


def lit(value: Any) -> str:
    """A literal for SQL that takes no parameters (views): text quoted, numbers as floats."""
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return repr(float(value))


#: a failed request, everywhere on the reading side: any status but ``ev.NOT_FAILURES`` (rate-limited
#: and unauthorized calls have their own signals; the server did not fail them)
ERROR: Final = "status NOT IN (" + ", ".join(lit(s) for s in ev.NOT_FAILURES) + ")"
#: everything but the pipeline's own health records
NOT_HEALTH: Final = f"kind IS DISTINCT FROM {lit(ev.HEALTH_KIND)}"
#: a session a user lists and opens (``mcplens sessions``): only a real (or stitched) session id. An
#: event without one (a protocol error, a stateless call nothing could stitch) is in no such session.
SESSION_ID: Final = "session_id"
#: the key the analysis follows one conversation by (chains, loops, read-then-send): the session id,
#: else one client of one process, else the process
SESSION_KEY: Final = "coalesce(session_id, client_id || '@' || instance_id, instance_id)"


def label(method: str, target: str) -> str:
    """SQL: what a request is about, kinds kept apart: a tool by its name, a prompt or resource
    prefixed (``prompt:fetch`` is not the tool ``fetch``), another method by itself."""
    return (f"CASE WHEN {method} = 'tools/call' THEN coalesce({target}, {method}) "
            f"WHEN {target} IS NULL OR {target} = {method} THEN {method} "
            f"WHEN {method} = 'prompts/get' THEN 'prompt:' || {target} "
            f"WHEN {method} = 'resources/read' THEN 'resource:' || {target} "
            f"ELSE {method} || ':' || {target} END")


def percentiles_sql(values: str, keys: str) -> str:
    """p50, p95, max and sum per ``keys`` and measure from ``values`` rows (keys, measure, value, n).

    Exactly what ``quantile_cont`` gives over the values themselves: the same positions
    ``q * (n - 1)`` and the same interpolation between the two closest ranks.
    """
    return f"""
        WITH v AS (SELECT {keys}, measure, value, sum(n) AS n FROM {values} GROUP BY ALL),
        c AS (SELECT *, sum(n) OVER (PARTITION BY {keys}, measure ORDER BY value ROWS UNBOUNDED PRECEDING) AS cum,
                     sum(n) OVER (PARTITION BY {keys}, measure) AS total FROM v),
        q AS (SELECT {keys}, measure, max(value) AS vmax, sum(value * n) AS vsum,
                     any_value(0.5::DOUBLE * (total - 1)) AS h50, any_value(0.95::DOUBLE * (total - 1)) AS h95,
                     min(value) FILTER (WHERE cum > floor(0.5::DOUBLE * (total - 1))) AS lo50,
                     min(value) FILTER (WHERE cum > ceil(0.5::DOUBLE * (total - 1))) AS hi50,
                     min(value) FILTER (WHERE cum > floor(0.95::DOUBLE * (total - 1))) AS lo95,
                     min(value) FILTER (WHERE cum > ceil(0.95::DOUBLE * (total - 1))) AS hi95
              FROM c GROUP BY ALL)
        SELECT {keys}, measure, vmax, vsum, lo50 + (h50 - floor(h50)) * (hi50 - lo50) AS p50,
               lo95 + (h95 - floor(h95)) * (hi95 - lo95) AS p95
        FROM q"""


def tool_hints(
    rows: Callable[..., list[dict[str, Any]]], relation: str, where: str = "", params: list[Any] | None = None
) -> dict[str, tuple[str, ...]]:
    """Tool annotations from the latest tools/list replies (newer ones win)."""
    found = rows(
        f"SELECT response_tool_hints::VARCHAR AS h FROM {relation} WHERE method = 'tools/list' "
        f"AND response_tool_hints IS NOT NULL {where} ORDER BY time DESC LIMIT 50",
        params or [],
    )
    hints: dict[str, tuple[str, ...]] = {}
    for r in reversed(found):
        try:
            for name, h in json.loads(r["h"]).items():
                hints[name] = tuple(h)
        except (ValueError, AttributeError, TypeError):
            continue
    return hints


def window_where(window: TimeWindow | None, server: str | None, base: str, *, strict: bool = False,
                 mark: str = "?") -> tuple[str, list[Any]]:
    """``base AND`` the window's bounds and the server, with their parameters; ``mark`` is the
    driver's placeholder (DuckDB ``?``, psycopg ``%s``); ``strict`` excludes ``since`` itself."""
    clauses, params = [base], []
    if window is not None and window.since is not None:
        clauses.append(f"time {'>' if strict else '>='} {mark}")
        params.append(window.since)
    if window is not None and window.until is not None:
        clauses.append(f"time < {mark}")
        params.append(window.until)
    if server is not None:
        clauses.append(f"server_name = {mark}")
        params.append(server)
    return " AND ".join(clauses), params
