"""Window rollups: what ``report``, ``sessions``, ``health`` and the dashboard's pages read instead of
scanning a window's events.

Compaction stores, per Parquet batch, small tables keyed by a 5-minute ``bucket`` (``floor(time /
BUCKET)``) beside the insights' rollups (:mod:`mcplens.store.rollup`). A reader answers a window
``[since, until)`` from the rows of the buckets that lie wholly inside it, plus the same rows
computed on the fly from the few raw events that do not: the window's two partial edge buckets and
the uncompacted tail. Because every table here is a pure per-bucket aggregate (sums, counts, min,
max, set union), rows of any split of the events add up to the rows of all of them: a batch's rows
need no history, and rollup + edges + tail equals a scan exactly. The one exception is ``flows``
(below), which follows sessions across batches as :mod:`.rollup`'s deltas do.

Tables (``ru_<name>``, listed in :data:`TABLES`):

* ``wsessions``: per (session id, server, bucket): client, version, transport (max, as the sessions
  list shows them), first and last event time, requests, errors, the distinct tool names, and the
  last ``tools/call`` of the bucket (tool and time: the flows of the tail start from it);
* ``whealth``: every health record, as it is (few: one per instance per minute);
* ``winst``: per (instance, bucket): events that are not health records (``mcplens health``'s
  ``events`` column);
* ``werrors``: per (server, tool, bucket, category, type, message): failed requests and the last one;
* ``flows``: tool transitions within a session (a call and the session's previous call), per
  resolution (``res`` 5-minute ``'b'`` or hourly ``'h'``), server, source and destination tool, the
  source's bucket ``sb``, the destination's ``db``, and ``pb`` the source bucket of the session's
  previous occurrence of the same transition (NULL for its first): so a window of whole buckets
  ``[b0, b1]`` counts ``n`` transitions with ``sb >= b0 AND db <= b1`` and ``sessions`` as those whose
  ``pb`` is NULL or before ``b0`` (each session once per transition), exactly. A batch's rows are
  the transitions *into* its calls, with the sessions' earlier calls as history (as :mod:`.rollup`).

``series`` (:func:`mcplens.store.rollup.series_sql`) carries the per-tool counts and histograms the
``report`` table reads (``calls``, ``duration``, ``size``, ``tokens``, ``size_max``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from mcplens import event as ev
from mcplens.store.sql import ERROR, NOT_HEALTH, SESSION_ID

#: the window rollups compaction stores per batch (``ru_<name>``)
TABLES: Final = ("wsessions", "whealth", "winst", "werrors", "flows")
BUCKET: Final = 300.0
HOUR: Final = 12  # buckets per hour

Exec = Callable[..., Any]


def _b(expr: str = "time") -> str:
    return f"floor({expr} / {BUCKET!r})::BIGINT"


def _h(expr: str = "time") -> str:
    return f"(floor({expr} / {BUCKET * HOUR!r}) * {HOUR})::BIGINT"


_CALL: Final = "kind = 'request' AND method = 'tools/call'"


def table_sql(relation: str) -> dict[str, str]:
    """The per-bucket tables (all but ``flows``) over ``relation`` (friendly column names), sorted by
    bucket so a reader's bucket filter skips most row groups."""
    return {
        "wsessions": f"""
            SELECT {SESSION_ID} AS session_id, server_name, {_b()} AS bucket,
                   max(client_name) AS client_name, max(client_version) AS client_version,
                   max(transport) AS transport, min(time) AS first, max(time) AS last,
                   count(*) FILTER (WHERE kind = 'request')::BIGINT AS calls,
                   count(*) FILTER (WHERE kind = 'request' AND {ERROR})::BIGINT AS errors,
                   list(DISTINCT tool) FILTER (WHERE tool IS NOT NULL) AS tools,
                   arg_max(target, {{'t': time, 'e': event_id}}) FILTER (WHERE {_CALL}) AS last_call,
                   max(time) FILTER (WHERE {_CALL}) AS last_call_time,
                   (max({{'t': time, 'e': event_id}}) FILTER (WHERE {_CALL})).e AS last_call_id
            FROM {relation} WHERE {NOT_HEALTH} AND {SESSION_ID} IS NOT NULL GROUP BY ALL ORDER BY bucket""",
        "whealth": f"""
            SELECT instance_id, server_name AS server, pid, time, event_id, {_b()} AS bucket,
                   health_enqueued AS enqueued, health_written AS written, health_dropped AS dropped,
                   health_faults AS faults, health_write_failures AS write_failures,
                   process_cpu_time AS cpu_s, process_memory_usage AS memory_bytes, process_start_time AS started
            FROM {relation} WHERE kind = '{ev.HEALTH_KIND}' ORDER BY time""",
        "winst": f"""
            SELECT instance_id, {_b()} AS bucket, count(*)::BIGINT AS n
            FROM {relation} WHERE {NOT_HEALTH} GROUP BY ALL ORDER BY bucket""",
        "werrors": f"""
            SELECT server_name AS server, coalesce(target, method) AS tool, {_b()} AS bucket,
                   error_category AS category, error_type, error_message AS message,
                   count(*)::BIGINT AS n, max(time) AS last
            FROM {relation} WHERE kind = 'request' AND proxy_direction IS NULL AND {ERROR}
            GROUP BY ALL ORDER BY bucket""",
    }


def _tool_calls(relation: str, is_new: bool) -> str:
    return f"""SELECT server_name AS server, {SESSION_ID} AS sid, target AS tool, time, event_id,
                      {str(is_new).lower()} AS is_new
               FROM {relation} WHERE kind = 'request' AND method = 'tools/call' AND {SESSION_ID} IS NOT NULL"""


def flows_sql(calls: str) -> str:
    """``flows`` rows from ``calls`` (server, sid, tool, time, event_id, is_new): the transitions into
    the new calls; older calls (``is_new`` false) are the sessions' history."""
    return f"""
        WITH seq AS (
            SELECT server, sid, is_new, time, event_id, tool AS dst, lag(tool) OVER w AS src,
                   lag(time) OVER w AS src_time
            FROM {calls} WINDOW w AS (PARTITION BY sid ORDER BY time, event_id)),
        occ AS (
            SELECT server, is_new, src, dst, {_b('src_time')} AS sb5, {_b()} AS db5,
                   {_h('src_time')} AS sbh, {_h()} AS dbh,
                   lag({_b('src_time')}) OVER o AS pb5, lag({_h('src_time')}) OVER o AS pbh
            FROM seq WHERE src_time IS NOT NULL
            WINDOW o AS (PARTITION BY sid, src, dst ORDER BY time, event_id))
        SELECT 'b' AS res, server, src, dst, sb5 AS sb, db5 AS db, pb5 AS pb, count(*)::BIGINT AS n
        FROM occ WHERE is_new GROUP BY ALL
        UNION ALL
        SELECT 'h', server, src, dst, sbh, dbh, pbh, count(*)::BIGINT FROM occ WHERE is_new GROUP BY ALL
        ORDER BY res, db"""


def compute(execute: Exec, new: str, history: str | None, prefix: str = "ru_") -> None:
    """Temp tables ``<prefix><table>`` of :data:`TABLES` over the events of relation ``new``;
    ``history``: earlier events (their sessions' calls precede ``new``'s in ``flows``)."""
    for name, sql in table_sql(new).items():
        execute(f"CREATE OR REPLACE TEMP TABLE {prefix}{name} AS {sql}")
    calls = f"({_tool_calls(new, True)})"
    if history is not None:
        execute(f"CREATE OR REPLACE TEMP TABLE {prefix}wcalls AS {_tool_calls(new, True)}")
        calls = f"""(SELECT * FROM {prefix}wcalls UNION ALL
                    SELECT * FROM ({_tool_calls(history, False)})
                    WHERE sid IN (SELECT DISTINCT sid FROM {prefix}wcalls))"""
    execute(f"CREATE OR REPLACE TEMP TABLE {prefix}flows AS {flows_sql(calls)}")
    execute(f"DROP TABLE IF EXISTS {prefix}wcalls")
