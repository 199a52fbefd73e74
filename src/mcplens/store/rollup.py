"""Rollups: the per-session and per-bucket work of the insights, done once per batch at compaction.

Chains, loops and read-then-send pairs need every request of a session in time order; over ten
million events that is seconds of window functions on every ``mcplens insights``. So compaction
computes, for each Parquet batch, small tables that the detectors read instead, and lists them in
the batch's manifest (the same commit, so a reader sees the batch and its rollups together).

The tables are *deltas*, which keeps them exact although sessions cross batch boundaries: a batch's
rollup is ``F(history + batch) - F(history)`` for the sessions the batch touches, where history is
their earlier events. Summing (or, for loops, taking the latest) over all batches then equals ``F``
over all events, and events not yet compacted are one more delta computed when reading. Every
table has a ``server`` column so ``--server`` can still use them.

**Windows (the contract any store meets).** Every row the analysis reads (:data:`WINDOWED`) sits in
the ``hour`` (``floor(time / HOUR_S)``; ``buckets``/``clients``: 5-minute ``bucket``, ``errmin``:
``minute``) of the call that makes it, judged with the session's whole history. So the rows of
any set of whole hours, merged by :data:`MERGE`, are what those hours' calls did; a window is the
stored rows of its whole hours plus ``compute()`` over its partial first and last hour and the
events not compacted yet, with the earlier events of their sessions as ``history`` (``spans`` says
where each session's calls begin). Over a window a session that began before it is judged with
its earlier calls (a chain or read-then-send across the window's start counts). A store that keeps
its own rollups (PostgreSQL) can keep these same rows per hour incrementally, ``compute()`` over
each new batch with its sessions' history, and hand them over as ``ru_*``.

``compute()`` is also the slow path: over the raw events of a window, with the events before it as
history, it gives the same tables, so the detectors have one implementation whichever way the
tables came.

Tables (``ru_<name>``):

* ``chains``: server, chain (2 or 3 tools), occurrences (counted at the chain's last call),
  sessions (counted where the chain first occurs in the session), ``ck`` the (server, chain) hash;
* ``sessions``: server, with_calls (sessions whose first tool call is here), with_2_calls;
* ``loops``: per (session, tool, arguments) key called at least twice and hour with its calls: the
  running count at the hour's end, and the row it supersedes (``prev_hour``, ``prev_n``), so a set
  of hours keeps each key's latest row with an anti-join instead of grouping every key;
* ``loopn``: ``loops`` counted per (server, tool, hour, n): how many keys, their first and last call
  and the :data:`LOOP_EXAMPLES` smallest sessions. A window adds up its hours' rows and takes off
  the few rows superseded within it (see :func:`loop_levels_from_counts`), instead of reading every key
  (1.4M rows over a week of the bench's 10M events, ~30k of these);
* ``exfil``: server, read tool, send tool, for sends within ``exfil_window`` after a successful
  read of that tool: sessions (counted at their first such send), sends, the largest request and
  some example sessions;
* ``buckets``: server, method, tool, bucket (``floor(time / bucket)``), error category (errors only),
  calls and errors: every request, so error spikes and volume need no scan;
* ``instances``: server, instance, pid, transport, first and last event time, the last request and the
  last health record (a clean stop writes one after its last request), requests, and the calls cut
  off by the server exiting (``ServerExited``);
* ``values`` and ``statuses``: for the per-tool table (``mcplens report``), each distinct payload
  size and token estimate, and each status, with its count per (server, method, target).
* ``series``: the dashboard's time series (see :func:`series_sql`): per 5-minute bucket, server,
  method, target and status the calls, errors and summed duration; latency and payload histograms
  (``mcplens.histogram``) per bucket and target; calls per client.
* ``spans``: per session key (``sk``), its first tool call ever and its last in the batch;
* ``clients``: tool calls per (server, client, 5-minute bucket), the client-spike baseline;
* ``errmin``: failed requests per (server, tool, minute), for tools that fail together;
* ``perf``: per (server, method, target, hour) the served calls, and latency (microseconds),
  payload and token ``mcplens.histogram`` buckets with count, sum, least and largest value;
* ``marks``: the events the analysis reads one by one, whole (:data:`MARKS`): a window filters them
  by time.
* ``chains_d``, ``perf_d``: ``chains`` and ``perf`` per UTC day (:data:`DAILY`; ``hour`` the day's
  first): a window reads the day rows of its whole days and the hour rows of the hours around them.

Assumption: a session's events reach later batches later in time (a segment is compacted after
the ones its process wrote before it). A straggler older than events already rolled up (a dead
writer's live segment compacted long after) is still counted, but the chains, loops and pairs
around it can differ from what a scan finds.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

from mcplens import event as ev
from mcplens.classify import ToolClasses
from mcplens.store import engine, windows
from mcplens.store.sql import ERROR, SESSION_KEY, label, tool_hints

#: beside the batches: ``parquet/rollups/<batch>.<tag>.<table>.parquet``, named in the batch's manifest;
#: files no manifest names (an interrupted or superseded roll-up) go at the next compaction
ROLLUP_DIR: Final = "rollups"
EXAMPLES: Final = 20  # example sessions kept per read-then-send pair
TABLES: Final = ("chains", "sessions", "loops", "exfil", "buckets", "instances", "values", "statuses", "series",
                  "spans", "clients", "errmin", "marks", "perf", "chains_d", "perf_d", "loopn")
#: example sessions ``loopn`` keeps per row: a run that wants more counts the loop keys themselves
LOOP_EXAMPLES: Final = 5
#: the windowed tables also stored per UTC day (``<table>_d``, ``hour`` the day's first hour, rows merged
#: as the hourly ones): a week reads 7 rows per key of its whole days instead of 168
DAILY: Final = ("chains", "perf")
#: hours per day row of :data:`DAILY`
DAY_H: Final = 24
#: bump when a table's meaning changes: batches rolled up by another version are rolled up again
VERSION: Final = 7  # 2: rate-limited/unauthorized are not errors (ev.NOT_FAILURES); instances know clean stops
# 3: the dashboard's ``series``
# 4: chains, sessions, loops, exfil and instances per ``hour`` (a window sums its whole hours); ``buckets``
#    with the served requests' count and first/last time; ``spans``, ``clients``, ``errmin``, ``marks``,
#    ``perf``
# 5: the window rollups of the views (store/windows.py) and series' tokens, size_max and daily rows
# 6: ``chains_d`` and ``perf_d``: chains and perf per UTC day, for a window's whole days
# 7: ``loopn``: loop keys counted per (server, tool, hour, n); the analysis's ``ru_loops`` is per level;
#    ``chains`` keyed by ``ck``
#: the default bucket of the error-spike detector; rollups are kept at this size, so a run whose
#: bucket is a multiple of it can use them
BUCKET: Final = 300.0
#: the default read-then-send window; rollups keep only sends this soon after a read
EXFIL_WINDOW: Final = 600.0
#: the dashboard's hourly histograms (``series``), in buckets
HOUR: Final = 12
#: ``mcplens report``'s daily rows (``series``' ``_d`` measures), in buckets: a week reads 7 per tool
DAY: Final = 288
#: seconds per ``hour`` of the session tables: a window reads the stored rows of its whole hours and
#: computes its partial first and last hour from the events
HOUR_S: Final = 3600.0
#: the tables a window's analysis needs (the others serve the whole store's report and the dashboard)
WINDOWED: Final = ("chains", "sessions", "loops", "exfil", "buckets", "instances", "clients", "errmin", "perf")
#: the tables made from the tool calls with their sessions' history (``calls``); the others count the
#: new events alone, so they can be made without the history, beside those
FROM_CALLS: Final = frozenset({"chains", "sessions", "loops", "loopn", "exfil", "spans", "series"})
#: the requests that serve something (the performance rules' scope)
SERVED: Final = ("tools/call", "resources/read", "prompts/get")
#: the events the analysis reads one by one, few among many: ``marks`` keeps them whole (every column), so a
#: window filters them by time like the events themselves: tool lists and handshakes that carry what the
#: drift and unused-tool rules and the classification read, process health records, and requests refused,
#: failing authentication or with redactions
MARKS: Final = (
    f"((method IN ('tools/list', 'initialize') AND (response_tool_names IS NOT NULL OR response_tool_hints IS NOT NULL"
    f" OR response_tool_hashes IS NOT NULL OR client_capabilities IS NOT NULL))"
    f" OR (kind = '{ev.HEALTH_KIND}' AND process_memory_usage IS NOT NULL)"
    f" OR (kind = 'request' AND proxy_direction IS NULL AND (status IN ('{ev.RATE_LIMITED}', '{ev.UNAUTHORIZED}')"
    f" OR error_category = '{ev.CAT_AUTH}' OR redactions IS NOT NULL)))"
)

#: the columns :func:`compute` reads of the new events for :data:`WINDOWED` (the marks, which are
#: read whole, are not among them): a reader that copies a window's edge into a table copies only
#: these (a third of the columns: ~0.1 -> 0.04 s for the partial first hour of 10M events)
COMPUTE_COLUMNS: Final = (
    "kind", "time", "duration_s", "method", "target", "request_args", "request_arguments", "request_size",
    "status", "error_type", "error_category", "response_size", "response_tokens", "session_id", "client_id",
    "client_name", "transport", "server_name", "instance_id", "pid", "proxy_direction")

Exec = Callable[..., Any]
Rows = Callable[..., list[dict[str, Any]]]

def _calls(relation: str, is_new: bool) -> str:
    return f"""
        SELECT time, server_name AS server, coalesce(target, method) AS tool, status, request_size,
               {SESSION_KEY} AS session, hash({SESSION_KEY}) AS sk,
               hash({SESSION_KEY}, target, coalesce(request_arguments::VARCHAR, request_args::VARCHAR, '')) AS loopkey,
               {str(is_new).lower()} AS is_new
        FROM {relation} WHERE kind = 'request' AND method = 'tools/call' AND {SESSION_KEY} IS NOT NULL"""


def _hour(column: str = "time") -> str:
    return f"floor({column} / {HOUR_S!r})::BIGINT"


def compute(
    execute: Exec,
    new: str,
    history: str | None,
    *,
    reads: Sequence[str],
    sends: Sequence[str],
    exfil_window: float,
    bucket: float = BUCKET,
    prefix: str = "ru_",
    tables: Sequence[str] = TABLES,
    sort: bool = True,
) -> None:
    """Create temp tables ``<prefix><table>`` (those in ``tables``) from the events of relation ``new``.

    ``history``: a relation holding earlier events (any superset of the earlier events of the
    sessions in ``new``, none later than them); ``None`` when the sessions in ``new`` have none.
    Only the tables in :data:`FROM_CALLS` read it: the others may be made by a call of their own,
    beside one making those. Both relations have the store's friendly column names. ``reads`` and
    ``sends`` are the tools classified as data access and as outbound, for the read-then-send pairs.

    Every contribution is counted in the ``hour`` of the call that makes it (a chain at its last
    call, a session at its first call, a read-then-send at the send), judged with the session's
    history: so the rows of any set of whole hours add up to what those hours' calls did.

    ``sort``: order the tables by time, so a window read from files written from them skips row
    groups. Tables that are only merged in memory (a window's edges, the slow path) need no order.
    """
    p = prefix
    want = set(tables)
    with_calls = bool(want & FROM_CALLS)  # else the new events' counts alone: no calls, no history
    if with_calls and history is None:
        execute(f"CREATE OR REPLACE TEMP TABLE {p}calls AS {_calls(new, True)}")
    elif with_calls:
        execute(f"CREATE OR REPLACE TEMP TABLE {p}new_calls AS {_calls(new, True)}")
        # the history's rows of other sessions are left out by their raw session id first, before the
        # session key and the loop key are computed for each (a session open for days would otherwise
        # cost a hash of every call of those days): a row with a session id has it as its key
        execute(f"CREATE OR REPLACE TEMP TABLE {p}new_sessions AS SELECT DISTINCT session FROM {p}new_calls")
        ours = (f"(SELECT * FROM {history} WHERE session_id IS NULL OR session_id IN "
                f"(SELECT session FROM {p}new_sessions))")
        execute(
            f"""CREATE OR REPLACE TEMP TABLE {p}calls AS
                SELECT * FROM {p}new_calls
                UNION ALL
                SELECT * FROM ({_calls(ours, False)}) WHERE sk IN (SELECT DISTINCT sk FROM {p}new_calls)"""
        )
    # history first on equal times: it was written earlier
    if want & {"chains", "sessions"}:
        execute(
            f"""CREATE OR REPLACE TEMP TABLE {p}seq AS
                SELECT server, sk, tool, is_new, time, lag(tool) OVER w AS p1, lag(tool, 2) OVER w AS p2,
                       row_number() OVER w AS k
                FROM {p}calls WINDOW w AS (PARTITION BY sk ORDER BY time, is_new)"""
        )
    if "chains" in want:
        # occurrences in the hour of the chain's last call; a session in the hour of its first occurrence
        execute(
            f"""CREATE OR REPLACE TEMP TABLE {p}chains AS
                WITH occ AS (
                    SELECT server, sk, [p1, tool] AS chain, is_new, time FROM {p}seq WHERE p1 IS NOT NULL
                    UNION ALL
                    SELECT server, sk, [p2, p1, tool], is_new, time FROM {p}seq WHERE p2 IS NOT NULL),
                per AS (SELECT server, sk, chain, min(time) AS t FROM occ GROUP BY ALL HAVING bool_and(is_new)),
                parts AS (
                    SELECT server, chain, {_hour()} AS hour, count(*) AS occurrences, 0 AS sessions
                    FROM occ WHERE is_new GROUP BY ALL
                    UNION ALL
                    SELECT server, chain, {_hour('t')}, 0, count(*) FROM per GROUP BY ALL)
                SELECT server, chain, hour, occurrences, sessions, hash(server, chain) AS ck FROM (
                    SELECT server, chain, hour, sum(occurrences)::BIGINT AS occurrences,
                           sum(sessions)::BIGINT AS sessions
                    FROM parts GROUP BY ALL)"""
        )
    if "sessions" in want:
        execute(
            f"""CREATE OR REPLACE TEMP TABLE {p}sessions AS
                SELECT server, {_hour()} AS hour, count(*) FILTER (WHERE k = 1) AS with_calls,
                       count(*) FILTER (WHERE k = 2) AS with_2_calls
                FROM {p}seq WHERE is_new AND k <= 2 GROUP BY ALL"""
        )
    if "loops" in want:
        # per hour with new calls: the key's running count at the hour's end, from 2 on, and where the
        # count stood before (``prev_hour``, ``prev_n``: the key's previous row, which this one supersedes)
        execute(
            f"""CREATE OR REPLACE TEMP TABLE {p}loops AS
                WITH c AS (
                    SELECT loopkey, server, tool, session, time, is_new,
                           count(*) OVER w AS run, lag(time) OVER w AS pt,
                           min(time) OVER (PARTITION BY loopkey) AS t0
                    FROM {p}calls WHERE loopkey IN (
                        SELECT loopkey FROM {p}calls GROUP BY 1 HAVING count(*) >= 2 AND bool_or(is_new))
                    WINDOW w AS (PARTITION BY loopkey ORDER BY time, is_new ROWS UNBOUNDED PRECEDING))
                SELECT loopkey, any_value(server) AS server, any_value(tool) AS tool,
                       any_value(session) AS session, {_hour()} AS hour, max(run) AS n, min(t0) AS t0,
                       max(time) AS t1, {_hour('arg_min(pt, run)')} AS prev_hour, min(run) - 1 AS prev_n
                FROM c WHERE is_new GROUP BY loopkey, hour HAVING max(run) >= 2"""
        )
    if "loopn" in want:
        execute(f"CREATE OR REPLACE TEMP TABLE {p}loopn AS {loop_counts_sql(p + 'loops', LOOP_EXAMPLES)}")
    if "exfil" in want:
        execute(
            f"""CREATE OR REPLACE TEMP TABLE {p}exfil AS
                WITH r AS (SELECT sk, tool AS a, time FROM {p}calls WHERE status = 'ok' AND tool IN (SELECT unnest(?))),
                     s AS (SELECT server, sk, session, tool AS b, time, request_size, is_new FROM {p}calls
                           WHERE tool IN (SELECT unnest(?))),
                     sa AS (SELECT s.*, ra.a FROM s JOIN (SELECT DISTINCT sk, a FROM r) ra USING (sk)
                            WHERE ra.a <> s.b),
                     j AS (SELECT sa.*, r.time AS read_time FROM sa ASOF JOIN r
                           ON sa.sk = r.sk AND sa.a = r.a AND r.time < sa.time),
                     p AS (SELECT * FROM j WHERE time - read_time <= ?),
                     firsts AS (SELECT server, a, b, {_hour('min(time)')} AS hour, any_value(session) AS session
                                FROM p GROUP BY server, sk, a, b HAVING bool_and(is_new)),
                     sends AS (SELECT server, a, b, {_hour()} AS hour, count(*) AS sends,
                                      max(request_size) AS max_send_bytes, min(read_time) AS first_read,
                                      max(time) AS last_send
                               FROM p WHERE is_new GROUP BY ALL),
                     f AS (SELECT server, a, b, hour, count(*) AS sessions,
                                  list(session ORDER BY session)[1:{EXAMPLES}] AS examples
                           FROM firsts GROUP BY ALL)
                SELECT server, a AS read_tool, b AS send_tool, hour, coalesce(f.sessions, 0) AS sessions,
                       sends::BIGINT AS sends, max_send_bytes, first_read, last_send,
                       coalesce(f.examples, []::VARCHAR[]) AS examples
                FROM sends LEFT JOIN f USING (server, a, b, hour)""",
            [list(reads), list(sends), exfil_window],
        )
    if "buckets" in want:
        execute(
            f"""CREATE OR REPLACE TEMP TABLE {p}buckets AS
                SELECT server_name AS server, method, coalesce(target, method) AS tool,
                       floor(time / {float(bucket)!r}) AS bucket,
                       CASE WHEN {ERROR} THEN error_category END AS category,
                       count(*) AS calls, count(*) FILTER (WHERE {ERROR}) AS errors,
                       count(*) FILTER (WHERE proxy_direction IS NULL) AS served,
                       min(time) FILTER (WHERE proxy_direction IS NULL) AS first,
                       max(time) FILTER (WHERE proxy_direction IS NULL) AS last
                FROM {new} WHERE kind = 'request' GROUP BY ALL"""
        )
    if "instances" in want:
        execute(
            f"""CREATE OR REPLACE TEMP TABLE {p}instances AS
                SELECT server_name AS server, instance_id, {_hour()} AS hour, any_value(pid) AS pid,
                       any_value(transport) AS transport, min(time) AS started, max(time) AS last_seen,
                       max(time) FILTER (WHERE kind = 'request') AS last_request,
                       max(time) FILTER (WHERE kind = '{ev.HEALTH_KIND}') AS last_health,
                       count(*) FILTER (WHERE kind = 'request') AS requests,
                       count(*) FILTER (WHERE error_type = 'ServerExited') AS exited
                FROM {new} WHERE instance_id IS NOT NULL GROUP BY 1, 2, 3"""
        )
    if "spans" in want:  # where each session's history starts: what an edge of a window must read
        execute(
            f"""CREATE OR REPLACE TEMP TABLE {p}spans AS
                SELECT sk, min(time) AS first, max(time) FILTER (WHERE is_new) AS last
                FROM {p}calls GROUP BY sk HAVING bool_or(is_new) ORDER BY last"""
        )
    if "clients" in want:  # tool calls per client and 5-minute bucket: the client-spike baseline
        execute(
            f"""CREATE OR REPLACE TEMP TABLE {p}clients AS
                SELECT server_name AS server, coalesce(client_id, client_name, 'unknown') AS client,
                       floor(time / {float(bucket)!r})::BIGINT AS bucket, max(client_name) AS client_name,
                       count(*) AS n, min(time) AS first
                FROM {new} WHERE kind = 'request' AND proxy_direction IS NULL AND method = 'tools/call'
                GROUP BY ALL"""
        )
    if "errmin" in want:  # the minutes each tool failed in (tools that fail together)
        execute(
            f"""CREATE OR REPLACE TEMP TABLE {p}errmin AS
                SELECT server_name AS server, {label('method', 'target')} AS tool, floor(time / 60)::BIGINT AS minute,
                       count(*) AS errors
                FROM {new} WHERE kind = 'request' AND proxy_direction IS NULL AND {ERROR} GROUP BY ALL"""
        )
    if "perf" in want:  # latency, payload and token histograms (mcplens.histogram) per served target and hour
        from mcplens.histogram import index_sql

        served = ", ".join(f"'{m}'" for m in SERVED)
        execute(
            f"""CREATE OR REPLACE TEMP TABLE {p}perf AS
                WITH r AS (SELECT server_name AS server, method, target, {_hour()} AS hour,
                                  round(duration_s * 1e6)::BIGINT AS d, response_size::BIGINT AS z,
                                  response_tokens::BIGINT AS k
                           FROM {new} WHERE kind = 'request' AND proxy_direction IS NULL AND method IN ({served}))
                SELECT server, method, target, hour, 'calls' AS measure, NULL::INTEGER AS idx, count(*) AS n,
                       NULL::BIGINT AS vsum, NULL::BIGINT AS vmin, NULL::BIGINT AS vmax FROM r GROUP BY ALL
                UNION ALL
                SELECT server, method, target, hour, 'duration', {index_sql('d')}, count(*), sum(d), min(d), max(d)
                FROM r WHERE d IS NOT NULL GROUP BY ALL
                UNION ALL
                SELECT server, method, target, hour, 'size', {index_sql('z')}, count(*), sum(z), min(z), max(z)
                FROM r WHERE z IS NOT NULL GROUP BY ALL
                UNION ALL
                SELECT server, method, target, hour, 'tokens', {index_sql('k')}, count(*), sum(k), min(k), max(k)
                FROM r WHERE k IS NOT NULL GROUP BY ALL"""
        )
    if "marks" in want:
        execute(f"CREATE OR REPLACE TEMP TABLE {p}marks AS SELECT * FROM {new} WHERE {MARKS} ORDER BY time")
    for table in DAILY:  # per day: the day's hourly rows merged (MERGE's sums, least and largest), by key
        if table in want and f"{table}_d" in want:
            keys = {"chains": "ck", "perf": "server, method, target, measure, idx"}[table]
            measures = {"chains": "any_value(server) AS server, any_value(chain) AS chain, "
                                  "sum(occurrences)::BIGINT AS occurrences, sum(sessions)::BIGINT AS sessions",
                        "perf": "sum(n)::BIGINT AS n, sum(vsum)::BIGINT AS vsum, min(vmin) AS vmin, "
                                "max(vmax) AS vmax"}[table]
            execute(f"""CREATE OR REPLACE TEMP TABLE {p}{table}_d AS
                        SELECT {keys}, (hour // {DAY_H}) * {DAY_H} AS hour, {measures} FROM {p}{table}
                        GROUP BY ALL ORDER BY hour""")
    # loops: the rows that supersede another (prev_n >= 2, few) last, where the window's read finds them;
    # then by count: every read keeps only n >= the loop threshold, so row groups' statistics skip the rest
    for table, column in (("chains", "hour"), ("loops", "prev_n >= 2, n, hour"), ("loopn", "n, hour"), ("perf", "hour"),
                          ("buckets", "bucket"),
                          ("clients", "bucket"), ("errmin", "minute"), ("instances", "hour"), ("exfil", "hour")):
        if sort and table in want:  # in time order: a window read from the stored files skips row groups
            execute(f"CREATE OR REPLACE TEMP TABLE {p}{table} AS SELECT * FROM {p}{table} ORDER BY {column}")
    for table, sql in tool_table_sql(new).items():
        if table in want:
            execute(f"CREATE OR REPLACE TEMP TABLE {p}{table} AS {sql}")
    if "series" in want:
        execute(f"CREATE OR REPLACE TEMP TABLE {p}series AS {series_sql(new, bucket, calls=f'{p}calls')}")
    if with_calls:  # what they were made from (another call's tables are not this one's to drop)
        execute(f"DROP TABLE IF EXISTS {p}seq")
        execute(f"DROP TABLE IF EXISTS {p}calls")
        execute(f"DROP TABLE IF EXISTS {p}new_calls")


def loop_counts_sql(rows: str, examples: int) -> str:
    """``loopn``'s rows from loop rows (``loops``' columns): per (server, tool, hour, n)."""
    return f"""SELECT server, tool, hour, n, count(*)::BIGINT AS keys, min(t0) AS t0, max(t1) AS t1,
                      min(session, {int(examples)}) AS ss
               FROM {rows} GROUP BY ALL"""


def loop_levels_sql(rows: str, examples: int) -> str:
    """The analysis's ``ru_loops`` from the loop rows of a set of hours (``rows``, those with ``n`` at
    least the run's minimum): each key's latest row (:data:`MERGE`), counted per (server, tool, n)
    with the ``examples`` smallest sessions; ``first`` and ``last``: the first and last call of the
    (server, tool)'s keys, on each of its rows."""
    latest = MERGE["loops"].format(src=rows)
    return f"""SELECT server, tool, n, count(*)::BIGINT AS keys, min(session, {int(examples)}) AS ss,
                      min(min(t0)) OVER st AS first, max(max(t1)) OVER st AS last
               FROM ({latest}) GROUP BY server, tool, n WINDOW st AS (PARTITION BY server, tool)"""


def loop_levels_from_counts(run: Rows, rows: str, counts: str, *, examples: int, min_loop: int,
                            first_hour: int | None) -> None:
    """``ru_loops`` as :func:`loop_levels_sql` makes it, from ``loopn`` rows (``counts``) of the same hours
    as ``rows``, with ``examples`` at most :data:`LOOP_EXAMPLES`.

    The counts of a set of hours add up every key's row of each hour; a key's rows but its latest
    are superseded by the next, which names it (``prev_hour``, ``prev_n``). Those next rows are few
    (a key whose calls span hours or batches; ``loops`` files keep them last, so a read skips the
    rest) and are taken off their level when the row they name is in the set: always when it lies in
    ``first_hour`` or later (a window's whole hours and its end hold every row of their keys'
    calls), else when the rows before ``first_hour`` (the window's partial first hour) hold it. A
    level whose examples name a superseded row's session gets them again from its rows.
    """
    m, k = int(min_loop), int(examples)
    rows, counts = f"(SELECT * FROM {rows})", f"(SELECT * FROM {counts})"  # either may end in a WHERE clause
    run(f"""CREATE OR REPLACE TEMP TABLE loop_next AS
            SELECT loopkey, server, tool, session, prev_hour, prev_n FROM {rows} WHERE prev_n >= {m}""")
    if first_hour is None:
        gone = "SELECT server, tool, prev_n AS n, session FROM loop_next"
    else:
        gone = f"""SELECT server, tool, prev_n AS n, session FROM loop_next WHERE prev_hour >= {int(first_hour)}
                   UNION ALL
                   SELECT x.server, x.tool, x.prev_n, x.session FROM loop_next x SEMI JOIN (
                       SELECT loopkey, hour, n FROM {rows} WHERE hour < {int(first_hour)}) r
                   ON x.loopkey = r.loopkey AND x.prev_hour = r.hour AND x.prev_n = r.n
                   WHERE x.prev_hour < {int(first_hour)}"""
    run(f"CREATE OR REPLACE TEMP TABLE loop_gone AS {gone}")
    same = "{a}.server IS NOT DISTINCT FROM {b}.server AND {a}.tool IS NOT DISTINCT FROM {b}.tool AND {a}.n = {b}.n"
    run(f"""CREATE OR REPLACE TEMP TABLE loop_levels AS
            WITH lv AS (SELECT server, tool, n, sum(keys) AS keys, min(t0) AS t0, max(t1) AS t1
                        FROM {counts} WHERE n >= {m} GROUP BY ALL),
                 ex AS (SELECT server, tool, n, min(s, {k}) AS ss
                        FROM (SELECT server, tool, n, unnest(ss) AS s FROM {counts} WHERE n >= {m}) GROUP BY ALL),
                 g AS (SELECT server, tool, n, count(*) AS k, list(session) AS s FROM loop_gone GROUP BY ALL)
            SELECT lv.server, lv.tool, lv.n, (lv.keys - coalesce(g.k, 0))::BIGINT AS keys, ex.ss,
                   min(lv.t0) OVER st AS first, max(lv.t1) OVER st AS last,
                   list_has_any(ex.ss, coalesce(g.s, [])) AS stale
            FROM lv JOIN ex ON {same.format(a='lv', b='ex')} LEFT JOIN g ON {same.format(a='lv', b='g')}
            WINDOW st AS (PARTITION BY lv.server, lv.tool)""")
    for lv in run("SELECT server, tool, n FROM loop_levels WHERE stale AND keys > 0"):
        run(f"""UPDATE loop_levels SET ss = (
                    SELECT min(session, {k}) FROM {rows} r ANTI JOIN loop_next x
                    ON r.loopkey = x.loopkey AND r.hour = x.prev_hour AND r.n = x.prev_n
                    WHERE r.server IS NOT DISTINCT FROM $1 AND r.tool IS NOT DISTINCT FROM $2 AND r.n = $3)
                WHERE server IS NOT DISTINCT FROM $1 AND tool IS NOT DISTINCT FROM $2 AND n = $3""",
            [lv["server"], lv["tool"], lv["n"]])
    run("CREATE OR REPLACE TEMP TABLE ru_loops AS SELECT server, tool, n, keys, ss, first, last FROM loop_levels "
        "WHERE keys > 0")


def tool_table_sql(relation: str) -> dict[str, str]:
    """The per-tool table's counts and its integer percentiles (payload bytes, tokens), exactly: every
    distinct value with its count, so ``mcplens report`` over the whole store scans only durations."""
    tool = f"FROM {relation} WHERE kind = 'request' AND proxy_direction IS NULL"
    return {
        "values": f"""
            SELECT server_name AS server, method, target, 'size' AS measure, response_size AS value, count(*) AS n
            {tool} AND response_size IS NOT NULL GROUP BY ALL
            UNION ALL
            SELECT server_name, method, target, 'tokens', response_tokens, count(*)
            {tool} AND response_tokens IS NOT NULL GROUP BY ALL""",
        "statuses": f"SELECT server_name AS server, method, target, status, count(*) AS n {tool} GROUP BY ALL",
    }


def series_sql(relation: str, bucket: float = BUCKET, calls: str | None = None) -> str:
    """The dashboard's time series of ``relation``'s tool-table requests (as ``mcplens report``
    counts them), one long table so one entry in the manifest carries it; rows by ``measure``:

    * ``calls``: per (server, method, target, bucket, status): ``n`` calls, ``errors``, ``vsum`` the
      summed duration in whole microseconds (integers: sums are exact in any order; for a mean);
    * ``duration`` / ``size``: per (server, method, target, bucket, idx): ``n`` calls whose duration
      (microseconds) or response size (bytes) falls in ``mcplens.histogram`` bucket ``idx``;
    * ``calls_h``, ``duration_h``, ``size_h``, ``client_h``: the same per hour (``bucket`` is the
      hour's first bucket; an hour is ``HOUR`` buckets): a week's chart reads far fewer rows;
    * ``tokens``: the same histogram of response token estimates; ``size_max``: per (server, method,
      target, bucket) the largest response size in ``vsum`` (the one measure merged by max, not sum);
    * ``calls_d``, ``duration_d``, ``size_d``, ``tokens_d``, ``size_max_d``: the same per UTC day (``bucket``
      the day's first; ``DAY`` buckets), which ``mcplens report`` reads for a window's whole days;
    * ``client``: per (server, client, bucket, status): ``n`` calls;
    * ``sessions``: per (server, bucket): ``n`` sessions with a tool call in the bucket.

    Every row adds: the merge over batches (and the uncompacted tail) is a SUM grouped by the keys.
    ``calls``: :func:`compute`'s table of tool calls with their sessions' history; a (session,
    bucket) already in the history is not counted again, so ``sessions`` adds up exactly across
    batches. Without it (the dashboard's own read of the uncompacted tail) a session whose bucket
    straddles the last compaction counts twice in that one bucket.
    """
    from mcplens.histogram import index_sql

    src = f"FROM {relation} WHERE kind = 'request' AND proxy_direction IS NULL"
    sessions = calls or f"({_calls(relation, True)})"
    null = "NULL::VARCHAR"
    parts = []
    for suffix, b in (("", f"floor(time / {float(bucket)!r})::BIGINT"),
                      ("_h", f"(floor(time / {float(bucket * HOUR)!r}) * {HOUR})::BIGINT"),
                      ("_d", f"(floor(time / {float(bucket * DAY)!r}) * {DAY})::BIGINT")):
        parts += [
            f"""SELECT server_name AS server, method, target, {null} AS client, {b} AS bucket, status,
                       'calls{suffix}' AS measure, NULL::INTEGER AS idx, count(*)::BIGINT AS n,
                       count(*) FILTER (WHERE {ERROR})::BIGINT AS errors,
                       sum(round(duration_s * 1e6))::BIGINT AS vsum
                {src} GROUP BY ALL""",
            f"""SELECT server_name, method, target, {null}, {b}, {null}, 'duration{suffix}',
                       {index_sql('duration_s * 1e6')}, count(*), NULL::BIGINT, NULL::BIGINT
                {src} AND duration_s IS NOT NULL GROUP BY ALL""",
            f"""SELECT server_name, method, target, {null}, {b}, {null}, 'size{suffix}', {index_sql('response_size')},
                       count(*), NULL::BIGINT, NULL::BIGINT
                {src} AND response_size IS NOT NULL GROUP BY ALL""",
            f"""SELECT server_name, method, target, {null}, {b}, {null}, 'tokens{suffix}',
                       {index_sql('response_tokens')}, count(*), NULL::BIGINT, NULL::BIGINT
                {src} AND response_tokens IS NOT NULL GROUP BY ALL""",
            f"""SELECT server_name, method, target, {null}, {b}, {null}, 'size_max{suffix}', NULL::INTEGER,
                       count(*), NULL::BIGINT, max(response_size)::BIGINT
                {src} AND response_size IS NOT NULL GROUP BY ALL""",
        ]
        if suffix != "_d":  # the charts' per-client rows: 5-minute and hourly only
            parts.append(
                f"""SELECT server_name, {null}, {null}, client_name, {b}, status, 'client{suffix}', NULL::INTEGER,
                           count(*), count(*) FILTER (WHERE {ERROR}), NULL::BIGINT
                    {src} GROUP BY ALL""")
    parts.append(
        f"""SELECT server, {null}, {null}, {null}, bucket, {null}, 'sessions', NULL::INTEGER, count(*), NULL::BIGINT,
                   NULL::BIGINT
            FROM (SELECT server, sk, floor(time / {float(bucket)!r})::BIGINT AS bucket FROM {sessions}
                  GROUP BY ALL HAVING bool_and(is_new))
            GROUP BY ALL""")
    # sorted so a reader's filter on measure and bucket skips most of the file's row groups
    return "\nUNION ALL\n".join(parts) + "\nORDER BY measure, bucket"


#: how the tables of several batches (and the not-yet-compacted delta) combine into one
#: the view ``ru_bucket_errors`` over the parts of ``ru_buckets`` (``{src}`` as in :data:`MERGE`): their
#: failed calls per category, not merged (a key may have a row in two parts)
BUCKET_ERRORS: Final = ("CREATE OR REPLACE TEMP VIEW ru_bucket_errors AS SELECT server, method, tool, bucket, "
                        "category, errors FROM (SELECT * FROM {src}) WHERE category IS NOT NULL AND errors > 0")

MERGE: Final[dict[str, str]] = {
    # by ``ck``, the (server, chain) pair's hash: grouping by a list of names is ~3x slower
    "chains": "SELECT any_value(server) AS server, any_value(chain) AS chain, sum(occurrences) AS occurrences, "
    "sum(sessions) AS sessions FROM {src} GROUP BY ck",
    "sessions": "SELECT server, sum(with_calls) AS with_calls, sum(with_2_calls) AS with_2_calls "
    "FROM {src} GROUP BY ALL",
    # each key's latest row: a row is superseded by the one that names it as its previous (no grouping by key)
    # two scans, not a CTE: the superseded keys are few (their scan reads three columns and keeps a handful of
    # rows), while a CTE read twice would hold every row of the window in memory first
    "loops": "SELECT loopkey, server, tool, session, n, t0, t1 FROM (SELECT * FROM {src}) ANTI JOIN "
    "(SELECT loopkey, prev_hour AS hour, prev_n AS n FROM (SELECT * FROM {src}) WHERE prev_n >= 2) "
    "USING (loopkey, hour, n)",
    "exfil": "SELECT server, read_tool, send_tool, sum(sessions) AS sessions, sum(sends) AS sends, "
    "max(max_send_bytes) AS max_send_bytes, min(first_read) AS first_read, max(last_send) AS last_send, "
    f"list_sort(flatten(list(examples)))[1:{EXAMPLES}] AS examples FROM {{src}} GROUP BY ALL",
    # over the error categories: a week of them is ~4x the rows, which only the error-spike rule reads,
    # for its few spiking buckets (BUCKET_ERRORS)
    "buckets": "SELECT server, method, tool, bucket, sum(calls) AS calls, sum(errors) AS errors, "
    "sum(served) AS served, min(first) AS first, max(last) AS last FROM {src} GROUP BY server, method, tool, bucket",
    "instances": "SELECT server, instance_id, any_value(pid) AS pid, any_value(transport) AS transport, "
    "min(started) AS started, max(last_seen) AS last_seen, max(last_request) AS last_request, "
    "max(last_health) AS last_health, sum(requests) AS requests, sum(exited) AS exited FROM {src} GROUP BY 1, 2",
    "values": "SELECT server, method, target, measure, value, sum(n) AS n FROM {src} GROUP BY ALL",
    "statuses": "SELECT server, method, target, status, sum(n) AS n FROM {src} GROUP BY ALL",
    "series": "SELECT server, method, target, client, bucket, status, measure, idx, sum(n)::BIGINT AS n, "
    "sum(errors)::BIGINT AS errors, "
    "coalesce(sum(vsum) FILTER (WHERE measure NOT LIKE 'size_max%'), max(vsum))::BIGINT AS vsum "
    "FROM {src} GROUP BY ALL",  # size_max: the largest, not the sum
    "spans": "SELECT sk, min(first) AS first, max(last) AS last FROM {src} GROUP BY sk",
    "clients": "SELECT server, client, bucket, max(client_name) AS client_name, sum(n) AS n, min(first) AS first "
    "FROM {src} GROUP BY ALL",
    "errmin": "SELECT server, tool, minute, sum(errors) AS errors FROM {src} GROUP BY ALL",
    "marks": "SELECT * FROM {src}",
    "perf": "SELECT server, method, target, measure, idx, sum(n)::BIGINT AS n, sum(vsum)::BIGINT AS vsum, "
    "min(vmin) AS vmin, max(vmax) AS vmax FROM {src} GROUP BY ALL",
}


def settings(
    tools: Sequence[str], reads: Sequence[str], sends: Sequence[str], exfil_window: float, bucket: float = BUCKET
) -> dict[str, Any]:
    """What a batch's rollups assumed; the manifest keeps it so a reader can tell if they still apply.

    ``tools``: every tool called up to and including the batch. A tool outside it had no call to
    pair, so how a later run classifies it cannot matter to this batch.
    """
    return {
        "version": VERSION,
        "bucket": bucket,
        "exfil_window": exfil_window,
        "tools": sorted(tools),
        "reads": sorted(reads),
        "sends": sorted(sends),
    }


#: a hash of the kinds of values the stored keys are hashes of (``sk``, ``loopkey``, ``ck``: strings, several
#: at once, a list): a window's edges hash their calls again and must get the same keys
HASH_PROBE: Final = "SELECT hash('mcplens', 'rollup', ['key']) AS h"
_PROBED: dict[str, int] = {}  # DuckDB's version -> its HASH_PROBE value, once per process


def hashes(run: Rows) -> dict[str, Any]:
    """What a batch's stored keys were hashed with: DuckDB's version and its :data:`HASH_PROBE`."""
    return {"duckdb": engine.version(), "hash": int(run(HASH_PROBE)[0]["h"])}


def _same_hash(meta: dict[str, Any]) -> bool:
    """Whether this process's DuckDB hashes as the one that rolled the batch up did: said by the same
    version, else asked once (a DuckDB whose hash() changed would find no session's history by key)."""
    version = engine.version()
    if meta.get("duckdb") == version:
        return True
    if version not in _PROBED:
        con = engine.duckdb().connect()
        try:
            _PROBED[version] = int(con.execute(HASH_PROBE).fetchone()[0])
        finally:
            con.close()
    return meta.get("hash") == _PROBED[version]


def complete(meta: dict[str, Any] | None) -> bool:
    """Rolled up by this version of mcplens, every table there, its keys hashed as this DuckDB does."""
    return (bool(meta) and meta.get("version") == VERSION and {*TABLES, *windows.TABLES} <= set(meta.get("files") or ())
            and _same_hash(meta))


def applies(meta: dict[str, Any], *, reads: Sequence[str], sends: Sequence[str], exfil_window: float,
            bucket: float) -> bool:
    """Whether stored rollups answer a run with these settings exactly.

    The tools a run classifies as reads and sends must have been classified so at rollup time too
    (extra pairs stored are filtered out when read; missing ones cannot be made up).
    """
    stored = float(meta.get("bucket") or 0)
    known = set(meta.get("tools") or ())
    return (
        complete(meta)
        and meta.get("exfil_window") == exfil_window
        and stored > 0
        and bucket % stored == 0
        and set(reads) & known <= set(meta.get("reads") or ())
        and set(sends) & known <= set(meta.get("sends") or ())
    )


def roll_up_batch(run: Rows, new: str, history: str | None, out: Path, known_tools: Sequence[str],
                  exfil_window: float) -> dict[str, Any]:
    """Compaction's half: the rollups of one batch written beside it; returns the manifest entry.

    ``run(sql, params) -> rows`` runs on the connection that has the ``new`` and ``history`` views.
    The classification is the default one plus the annotations seen so far; a run configured
    otherwise (``[insights.tools]``) finds out through :func:`applies` and reads the events instead.
    """
    everything = new if history is None else f"(SELECT * FROM {new} UNION ALL BY NAME SELECT * FROM {history})"
    called = [r["t"] for r in run(f"SELECT DISTINCT target AS t FROM {new} WHERE method = 'tools/call' "
                                  "AND kind = 'request' AND target IS NOT NULL")]
    tools = sorted({*known_tools, *called})
    reads, sends = ToolClasses(hints=tool_hints(run, everything)).split(tools)
    compute(run, new, history, reads=reads, sends=sends, exfil_window=exfil_window)
    windows.compute(run, new, history)  # report, sessions, health and the dashboard's pages over windows
    files = {}
    (out.parent / ROLLUP_DIR).mkdir(exist_ok=True)
    tag = os.urandom(3).hex()  # a re-roll never overwrites files a reader of the old manifest may be reading
    for table in (*TABLES, *windows.TABLES):
        name = f"{ROLLUP_DIR}/{out.stem}.{tag}.{table}.parquet"
        quoted = "'" + str(out.parent / name).replace("'", "''") + "'"
        run(f"COPY ru_{table} TO {quoted} (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 16384)")
        files[table] = name
    span = run(f"SELECT min(time) AS lo, max(time) AS hi FROM {new}")[0]  # a window reads only batches it overlaps
    # the marks are events (every column of the batch's view): with each batch's recorded, batches whose
    # marks have the same columns are read without matching them by name (see marks_columns). Described
    # from the table the file was written from: the file is not read again
    columns = [[r["column_name"], r["column_type"]] for r in run("DESCRIBE SELECT * FROM ru_marks")]
    return {**settings(tools, reads, sends, exfil_window), **hashes(run), "files": files,
            "time": [span["lo"], span["hi"]], "marks_columns": columns}


def marks_columns(metas: Sequence[dict[str, Any]]) -> list[list[str]] | None:
    """The columns every batch's marks file has, when each batch recorded them and all agree; else None
    (then the files are read matching columns by name, which opens every file's footer for each query
    of them: ~4 ms per query over a week of batches, and the analysis runs a dozen)."""
    first = metas[0].get("marks_columns") if metas else None
    return first if first and all(m.get("marks_columns") == first for m in metas) else None
