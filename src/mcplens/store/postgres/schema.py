"""The PostgreSQL schema: versioned migrations, day partitions, roles, retention.

Everything lives in schema ``mcplens``, owned by whoever runs ``mcplens db upgrade`` (an admin role).

* ``events``: one column per event field, named as the reading side names them (store/base.FIELDS),
  partitioned by range on ``time`` (epoch seconds), one partition per UTC day; unique on
  ``(event_id, time)`` so a replayed batch inserts nothing twice (``ON CONFLICT DO NOTHING``).
* ``rollup_calls`` / ``rollup_hists``: per hour x server x method x target, the calls, errors (by
  status), duration sums and the latency/size/token histograms of ``mcplens.histogram`` (one row
  per measure: ``counts[k]`` is bucket ``lo + k - 1``; merge = add by bucket; the view
  ``rollup_hist`` gives one row per bucket). Since schema 2 each writer adds its batch's deltas in
  the batch's own transaction (``add_rollups``), and ``merge_stage()`` rolls up the rows a replay
  actually added, so nothing is counted twice and the per-tool table over any number of events
  reads a few thousand rows. (Schema 1 kept them with a per-row statement trigger: half the
  database's ingest cost.)
* Roles: ``mcplens_writer`` may INSERT into ``events`` and ``stage`` and call the helper functions
  (partitions, retention floor, rollup deltas that only add, the replay merge), nothing else: it
  cannot SELECT.
  ``mcplens_reader`` may SELECT, nothing else. Login roles are made members of one of them.
* ``ensure_partitions(days)``: SECURITY DEFINER, so a writer can have the day partitions it needs
  created without DDL rights; ``keep_since()``: the retention floor, so a late replay does not bring
  back a dropped day.

Migrations are a list; ``upgrade`` applies the missing ones in order, each in its own transaction,
under an advisory lock (two replicas upgrading at once do it once).
"""

from __future__ import annotations

import time
from typing import Any, Final

from mcplens import histogram

SCHEMA: Final = "mcplens"
WRITER_ROLE: Final = "mcplens_writer"
READER_ROLE: Final = "mcplens_reader"
DAY: Final = 86400
#: rollup granularity: hours (a 7-day per-tool table merges 168 buckets per tool)
HOUR: Final = 3600
#: partitions created ahead of time by ``db upgrade`` / ``retention`` (writers create any other day they need)
AHEAD_DAYS: Final = 3
_LOCK: Final = 7_160_101_100  # advisory lock id for migrations and partition changes

#: DuckDB type -> PostgreSQL type; text compares bytewise (COLLATE "C"), as DuckDB orders strings
_PG_TYPES: Final = {"VARCHAR": 'text COLLATE "C"', "INTEGER": "integer", "DOUBLE": "double precision",
                    "BIGINT": "bigint", "JSON": "jsonb", "VARCHAR[]": "text[]"}


#: the PostgreSQL writer's own counters, carried by the health records it writes (schema 2; not
#: event fields of the local store, which has no spool): (column, health record key, type)
WRITER_HEALTH: Final = (("health_sent", "mcplens.health.pg_sent", "bigint"),
                        ("health_spooled", "mcplens.health.pg_spooled", "bigint"),
                        ("health_replayed", "mcplens.health.pg_replayed", "bigint"),
                        ("health_rejected", "mcplens.health.pg_rejected", "bigint"))


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def columns() -> list[tuple[str, str, str]]:
    """(friendly name, event key, PostgreSQL type) in ``event.COLUMNS`` order."""
    from mcplens.store.base import FIELDS

    return [(name, key, _PG_TYPES[t]) for name, (key, t) in FIELDS.items()]


def _events_table() -> str:
    cols = ",\n  ".join(f"{_ident(n)} {t}" + (" NOT NULL" if n in ("event_id", "time") else "")
                        for n, _, t in columns())
    return f"CREATE TABLE {SCHEMA}.events (\n  {cols}\n) PARTITION BY RANGE (time)"


def _raw_type() -> str:
    """A row type named by event keys: ``jsonb_populate_record`` maps one JSON line onto it in C."""
    cols = ", ".join(f"{_ident(k)} {t}" for _, k, t in columns())
    return f"CREATE TYPE {SCHEMA}.raw_event AS ({cols})"


_IS_CALL = "kind = 'request' AND proxy_direction IS NULL"
_KEY = "hour, server, method, target"

_ROLLUP_TABLES: Final = f"""
CREATE TABLE {SCHEMA}.rollup_calls (
  hour double precision NOT NULL, server text COLLATE "C", method text COLLATE "C", target text COLLATE "C",
  status text COLLATE "C",
  calls bigint NOT NULL, dur_n bigint NOT NULL, dur_sum double precision NOT NULL, size_max bigint,
  UNIQUE NULLS NOT DISTINCT (hour, server, method, target, status));
CREATE TABLE {SCHEMA}.rollup_hist (
  hour double precision NOT NULL, server text COLLATE "C", method text COLLATE "C", target text COLLATE "C",
  measure "char" NOT NULL,
  idx integer NOT NULL, n bigint NOT NULL,
  UNIQUE NULLS NOT DISTINCT (hour, server, method, target, measure, idx));
"""

#: measure codes of rollup_hist: duration in microseconds, response size in bytes, token estimate
MEASURES: Final = {"d": "duration_s * 1000000.0", "s": "response_size", "t": "response_tokens"}

_ROLL_UP_FN: Final = f"""
CREATE FUNCTION {SCHEMA}.roll_up() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
SET search_path = {SCHEMA}, pg_temp AS $fn$
BEGIN
  INSERT INTO {SCHEMA}.rollup_calls AS r ({_KEY}, status, calls, dur_n, dur_sum, size_max)
  SELECT floor(time / {HOUR}) * {HOUR}, server_name, method, target, status,
         count(*), count(duration_s), coalesce(sum(duration_s), 0), max(response_size)
  FROM new_rows WHERE {_IS_CALL}
  GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5
  ON CONFLICT ({_KEY}, status) DO UPDATE SET calls = r.calls + excluded.calls, dur_n = r.dur_n + excluded.dur_n,
    dur_sum = r.dur_sum + excluded.dur_sum, size_max = greatest(r.size_max, excluded.size_max);
  INSERT INTO {SCHEMA}.rollup_hist AS r ({_KEY}, measure, idx, n)
  SELECT floor(time / {HOUR}) * {HOUR}, server_name, method, target, v.measure, v.idx, count(*)
  FROM new_rows CROSS JOIN LATERAL (VALUES
    {", ".join(f"('{m}'::"+'"char"'+f", {histogram.index_sql(expr)})" for m, expr in MEASURES.items())}
  ) AS v(measure, idx)
  WHERE {_IS_CALL} AND v.idx IS NOT NULL
  GROUP BY 1, 2, 3, 4, 5, 6 ORDER BY 1, 2, 3, 4, 5, 6
  ON CONFLICT ({_KEY}, measure, idx) DO UPDATE SET n = r.n + excluded.n;
  RETURN NULL;
END $fn$;
CREATE TRIGGER roll_up AFTER INSERT ON {SCHEMA}.events REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION {SCHEMA}.roll_up();
"""

_PARTITION_FNS: Final = f"""
CREATE TABLE {SCHEMA}.settings (key text PRIMARY KEY, value text NOT NULL);
CREATE FUNCTION {SCHEMA}.keep_since() RETURNS double precision LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = {SCHEMA}, pg_temp AS $fn$
  SELECT coalesce((SELECT value::double precision FROM {SCHEMA}.settings WHERE key = 'keep_since'), 0)
$fn$;
CREATE FUNCTION {SCHEMA}.ensure_partitions(days integer[]) RETURNS integer LANGUAGE plpgsql SECURITY DEFINER
SET search_path = {SCHEMA}, pg_temp AS $fn$
DECLARE d integer; made integer := 0; floor_day integer;
BEGIN
  IF cardinality(days) > 62 THEN RAISE EXCEPTION 'too many days at once (%)', cardinality(days); END IF;
  floor_day := floor({SCHEMA}.keep_since() / {DAY});
  PERFORM pg_advisory_xact_lock({_LOCK});
  FOREACH d IN ARRAY days LOOP
    CONTINUE WHEN d < floor_day OR d < 0 OR d > 200000;
    IF to_regclass(format('{SCHEMA}.events_%s', to_char(to_timestamp(d::double precision * {DAY}) AT TIME ZONE 'UTC',
                                                     'YYYYMMDD'))) IS NULL THEN
      EXECUTE format('CREATE TABLE {SCHEMA}.%I PARTITION OF {SCHEMA}.events FOR VALUES FROM (%s) TO (%s)',
                     'events_' || to_char(to_timestamp(d::double precision * {DAY}) AT TIME ZONE 'UTC', 'YYYYMMDD'),
                     d::bigint * {DAY}, (d::bigint + 1) * {DAY});
      made := made + 1;
    END IF;
  END LOOP;
  RETURN made;
END $fn$;
"""


def _roles() -> str:
    return f"""
DO $do$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{WRITER_ROLE}') THEN CREATE ROLE {WRITER_ROLE} NOLOGIN; END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{READER_ROLE}') THEN CREATE ROLE {READER_ROLE} NOLOGIN; END IF;
END $do$;
REVOKE ALL ON SCHEMA {SCHEMA} FROM PUBLIC;
REVOKE ALL ON FUNCTION {SCHEMA}.ensure_partitions(integer[]), {SCHEMA}.keep_since(), {SCHEMA}.roll_up() FROM PUBLIC;
GRANT USAGE ON SCHEMA {SCHEMA} TO {WRITER_ROLE}, {READER_ROLE};
GRANT INSERT ON {SCHEMA}.events TO {WRITER_ROLE};
GRANT EXECUTE ON FUNCTION {SCHEMA}.ensure_partitions(integer[]), {SCHEMA}.keep_since() TO {WRITER_ROLE};
GRANT USAGE ON TYPE {SCHEMA}.raw_event TO {WRITER_ROLE};
DO $do$ BEGIN EXECUTE format('GRANT TEMPORARY ON DATABASE %I TO {WRITER_ROLE}', current_database()); END $do$;
GRANT SELECT ON {SCHEMA}.events, {SCHEMA}.rollup_calls, {SCHEMA}.rollup_hist, {SCHEMA}.schema_version
  TO {READER_ROLE};
"""


def _rollup_select(src: str) -> str:
    """Roll up the calls of relation ``src`` (rows made in SQL: ``merge_stage``, a bulk load)."""
    measures = ", ".join(f"('{m}'::" + '"char"' + f", {histogram.index_sql(expr)})" for m, expr in MEASURES.items())
    return f"""
  INSERT INTO {SCHEMA}.rollup_calls AS r ({_KEY}, status, calls, dur_n, dur_sum, size_max)
  SELECT floor(time / {HOUR}) * {HOUR}, server_name, method, target, status,
         count(*), count(duration_s), coalesce(sum(duration_s), 0), max(response_size)
  FROM {src} WHERE {_IS_CALL}
  GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5
  ON CONFLICT ({_KEY}, status) DO UPDATE SET calls = r.calls + excluded.calls, dur_n = r.dur_n + excluded.dur_n,
    dur_sum = r.dur_sum + excluded.dur_sum, size_max = greatest(r.size_max, excluded.size_max);
  INSERT INTO {SCHEMA}.rollup_hists AS r ({_KEY}, measure, lo, counts)
  SELECT h, s, m, t, measure, min(idx), {SCHEMA}.hist_dense(array_agg(idx), array_agg(n)) FROM (
    SELECT floor(time / {HOUR}) * {HOUR} AS h, server_name AS s, method AS m, target AS t, v.measure, v.idx,
           count(*) AS n
    FROM {src} CROSS JOIN LATERAL (VALUES {measures}) AS v(measure, idx)
    WHERE {_IS_CALL} AND v.idx IS NOT NULL GROUP BY 1, 2, 3, 4, 5, 6) x
  GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5
  ON CONFLICT ({_KEY}, measure) DO UPDATE SET lo = least(r.lo, excluded.lo),
    counts = {SCHEMA}.hist_add(r.lo, r.counts, excluded.lo, excluded.counts);"""


_ADD_FN_ARGS: Final = "deltas jsonb"

#: Writers COPY typed rows straight into ``events`` and add the batch's rollup deltas themselves
#: (``add_rollups``, one JSON document per batch); the per-row trigger goes. A batch holding an id
#: already stored goes through ``stage`` and ``merge_stage()`` instead (inserts what is new, rolls up
#: only that). Both helpers are SECURITY DEFINER and only ever add: the writer still cannot read or
#: change what is stored. Histograms become one row per (hour, key, measure): ``counts[k]`` is the
#: count of bucket ``lo + k - 1`` (a batch upserts a few dozen rows, not one per bucket); the view
#: ``rollup_hist`` keeps the one-row-per-bucket shape for readers.
_MIGRATION_2: Final = f"""
DROP TRIGGER roll_up ON {SCHEMA}.events;
ALTER TABLE {SCHEMA}.events {", ".join(f"ADD COLUMN {_ident(n)} {t}" for n, _, t in WRITER_HEALTH)};
CREATE UNLOGGED TABLE {SCHEMA}.stage (LIKE {SCHEMA}.events);
CREATE FUNCTION {SCHEMA}.hist_add(lo1 integer, n1 bigint[], lo2 integer, n2 bigint[]) RETURNS bigint[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$
  SELECT array_agg(coalesce(n1[i - lo1 + 1], 0) + coalesce(n2[i - lo2 + 1], 0) ORDER BY i)
  FROM generate_series(least(lo1, lo2), greatest(lo1 + cardinality(n1), lo2 + cardinality(n2)) - 1) AS g(i)
$fn$;
CREATE FUNCTION {SCHEMA}.hist_dense(idx integer[], n bigint[]) RETURNS bigint[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$
  SELECT array_agg(coalesce(m.n, 0) ORDER BY g.i)
  FROM generate_series((SELECT min(x) FROM unnest(idx) AS x), (SELECT max(x) FROM unnest(idx) AS x)) AS g(i)
  LEFT JOIN unnest(idx, n) AS m(i, n) USING (i)
$fn$;
CREATE TABLE {SCHEMA}.rollup_hists (
  hour double precision NOT NULL, server text COLLATE "C", method text COLLATE "C", target text COLLATE "C",
  measure "char" NOT NULL, lo integer NOT NULL, counts bigint[] NOT NULL,
  UNIQUE NULLS NOT DISTINCT (hour, server, method, target, measure));
INSERT INTO {SCHEMA}.rollup_hists
  SELECT hour, server, method, target, measure, min(idx), {SCHEMA}.hist_dense(array_agg(idx), array_agg(n))
  FROM {SCHEMA}.rollup_hist GROUP BY 1, 2, 3, 4, 5;
DROP TABLE {SCHEMA}.rollup_hist;
CREATE VIEW {SCHEMA}.rollup_hist AS
  SELECT h.hour, h.server, h.method, h.target, h.measure, h.lo + u.k::integer - 1 AS idx, u.n
  FROM {SCHEMA}.rollup_hists h CROSS JOIN LATERAL unnest(h.counts) WITH ORDINALITY AS u(n, k) WHERE u.n > 0;
CREATE FUNCTION {SCHEMA}.add_rollups({_ADD_FN_ARGS}) RETURNS void LANGUAGE plpgsql SECURITY DEFINER
SET search_path = {SCHEMA}, pg_temp AS $fn$
BEGIN
  IF EXISTS (SELECT FROM jsonb_array_elements(deltas -> 'c') AS e
             WHERE NOT ((e ->> 5)::bigint > 0 AND (e ->> 6)::bigint BETWEEN 0 AND (e ->> 5)::bigint))
     OR EXISTS (SELECT FROM jsonb_array_elements(deltas -> 'h') AS e
                WHERE NOT (e ->> 4 IN ('d', 's', 't') AND 0 <= ALL ((e ->> 6)::bigint[])
                           AND cardinality((e ->> 6)::bigint[]) > 0)) THEN
    RAISE EXCEPTION 'mcplens rollup deltas only add' USING ERRCODE = 'data_exception';
  END IF;
  INSERT INTO {SCHEMA}.rollup_calls AS r ({_KEY}, status, calls, dur_n, dur_sum, size_max)
  SELECT (e ->> 0)::double precision, e ->> 1, e ->> 2, e ->> 3, e ->> 4, (e ->> 5)::bigint, (e ->> 6)::bigint,
         (e ->> 7)::double precision, (e ->> 8)::bigint
  FROM jsonb_array_elements(deltas -> 'c') AS e ORDER BY 1, 2, 3, 4, 5
  ON CONFLICT ({_KEY}, status) DO UPDATE SET calls = r.calls + excluded.calls, dur_n = r.dur_n + excluded.dur_n,
    dur_sum = r.dur_sum + excluded.dur_sum, size_max = greatest(r.size_max, excluded.size_max);
  INSERT INTO {SCHEMA}.rollup_hists AS r ({_KEY}, measure, lo, counts)
  SELECT (e ->> 0)::double precision, e ->> 1, e ->> 2, e ->> 3, (e ->> 4)::"char", (e ->> 5)::integer,
         (e ->> 6)::bigint[]
  FROM jsonb_array_elements(deltas -> 'h') AS e ORDER BY 1, 2, 3, 4, 5
  ON CONFLICT ({_KEY}, measure) DO UPDATE SET lo = least(r.lo, excluded.lo),
    counts = {SCHEMA}.hist_add(r.lo, r.counts, excluded.lo, excluded.counts);
END $fn$;
CREATE FUNCTION {SCHEMA}.merge_stage() RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER
SET search_path = {SCHEMA}, pg_temp AS $fn$
DECLARE added bigint;
BEGIN
  -- the rows this transaction staged: no transaction's staged rows are ever committed
  CREATE TEMP TABLE IF NOT EXISTS merged (LIKE {SCHEMA}.events) ON COMMIT DELETE ROWS;
  WITH s AS (DELETE FROM {SCHEMA}.stage RETURNING *),
       ins AS (INSERT INTO {SCHEMA}.events SELECT * FROM s WHERE time >= {SCHEMA}.keep_since()
               ON CONFLICT DO NOTHING RETURNING *)
  INSERT INTO pg_temp.merged SELECT * FROM ins;
  GET DIAGNOSTICS added = ROW_COUNT;
  {{rollup}}
  DELETE FROM pg_temp.merged;
  RETURN added;
END $fn$;
REVOKE ALL ON FUNCTION {SCHEMA}.add_rollups({_ADD_FN_ARGS}), {SCHEMA}.merge_stage() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION {SCHEMA}.add_rollups({_ADD_FN_ARGS}), {SCHEMA}.merge_stage() TO {WRITER_ROLE};
GRANT INSERT ON {SCHEMA}.stage TO {WRITER_ROLE};
GRANT SELECT ON {SCHEMA}.rollup_hists, {SCHEMA}.rollup_hist TO {READER_ROLE};
DO $do$ BEGIN EXECUTE format('REVOKE TEMPORARY ON DATABASE %I FROM {WRITER_ROLE}', current_database()); END $do$;
"""


#: (version, what, SQL). Append only: a released migration never changes.
MIGRATIONS: Final[list[tuple[int, str, Any]]] = [
    (1, "events partitioned by day, hourly rollups, helper functions, writer and reader roles",
     lambda: "\n;\n".join([_events_table(),
                           f"CREATE UNIQUE INDEX events_id ON {SCHEMA}.events (event_id, time)",
                           # BRIN: events arrive in time order per day, so a block-range index answers
                           # `tail` and windows at a fraction of a btree's cost per insert
                           f"CREATE INDEX events_time ON {SCHEMA}.events USING brin (time)",
                           f"CREATE INDEX events_session ON {SCHEMA}.events (session_id, time)",
                           _raw_type(), _ROLLUP_TABLES, _PARTITION_FNS, _ROLL_UP_FN, _roles()])),
    (2, "writers COPY typed rows and add rollup deltas per batch (no per-row trigger); stage + merge for replays; "
        "one histogram row per hour, key and measure",
     lambda: _MIGRATION_2.replace("{rollup}", _rollup_select("pg_temp.merged"))),
]
LATEST: Final = MIGRATIONS[-1][0]


def current_version(conn: Any) -> int:
    row = conn.execute(f"SELECT to_regclass('{SCHEMA}.schema_version') IS NOT NULL").fetchone()
    if not row[0]:
        return 0
    return int(conn.execute(f"SELECT coalesce(max(version), 0) FROM {SCHEMA}.schema_version").fetchone()[0])


def upgrade(conn: Any, *, now: float | None = None) -> list[int]:
    """Apply the missing migrations in order; returns the versions applied (none when up to date).

    ``conn`` is in autocommit mode (as :func:`mcplens.store.postgres.connect` gives it): each step
    is its own explicit transaction."""
    applied = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
        conn.execute(f"CREATE TABLE IF NOT EXISTS {SCHEMA}.schema_version (version integer PRIMARY KEY, "
                     "what text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())")
        have = current_version(conn)
        for version, what, sql in MIGRATIONS:
            if version <= have:
                continue
            conn.execute(sql() if callable(sql) else sql)
            conn.execute(f"INSERT INTO {SCHEMA}.schema_version (version, what) VALUES (%s, %s)", (version, what))
            applied.append(version)
    ensure_ahead(conn, now=now)
    return applied


def ensure_ahead(conn: Any, *, now: float | None = None, days: int = AHEAD_DAYS) -> int:
    """Create today's partition and the next ``days`` (so writers rarely need to)."""
    today = int((time.time() if now is None else now) // DAY)
    with conn.transaction():
        n = conn.execute(f"SELECT {SCHEMA}.ensure_partitions(%s)",
                         (list(range(today - 1, today + days + 1)),)).fetchone()
    return int(n[0])


def partitions(conn: Any) -> list[tuple[str, int]]:
    """(partition name, first day number) of every day partition, oldest first."""
    rows = conn.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "JOIN pg_class p ON p.oid = i.inhparent JOIN pg_namespace n ON n.oid = p.relnamespace "
        "WHERE n.nspname = %s AND p.relname = 'events' ORDER BY c.relname", (SCHEMA,)).fetchall()
    out = []
    for (name,) in rows:
        try:
            t = time.strptime(name.removeprefix("events_"), "%Y%m%d")
        except ValueError:
            continue
        out.append((name, int(_timegm(t) // DAY)))
    return out


def _timegm(t: time.struct_time) -> float:
    import calendar

    return float(calendar.timegm(t))


def apply_retention(conn: Any, keep_seconds: float | None = None, *, now: float | None = None) -> dict[str, Any]:
    """Drop the day partitions (and the hourly rollups) wholly older than the retention.

    ``keep_seconds`` is saved as the setting when given, else the saved one is used (none: keep all).
    Days are dropped whole: an event is kept at least ``keep`` and at most a day longer.
    """
    now = time.time() if now is None else now
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))
        if keep_seconds is not None:
            conn.execute(f"INSERT INTO {SCHEMA}.settings VALUES ('retention_seconds', %s) "
                         "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (str(float(keep_seconds)),))
        row = conn.execute(f"SELECT value FROM {SCHEMA}.settings WHERE key = 'retention_seconds'").fetchone()
        if row is None:
            return {"keep_seconds": None, "dropped": [], "keep_since": None}
        keep = float(row[0])
        first_kept_day = int((now - keep) // DAY)
        floor = first_kept_day * DAY
        dropped = []
        for name, day in partitions(conn):
            if day < first_kept_day:
                conn.execute(f"DROP TABLE {SCHEMA}.{_ident(name)}")
                dropped.append(name)
        conn.execute(f"DELETE FROM {SCHEMA}.rollup_calls WHERE hour < %s", (float(floor),))
        conn.execute(f"DELETE FROM {SCHEMA}.rollup_hists WHERE hour < %s", (float(floor),))
        conn.execute(f"INSERT INTO {SCHEMA}.settings VALUES ('keep_since', %s) "
                     "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (str(float(floor)),))
    ensure_ahead(conn, now=now)
    return {"keep_seconds": keep, "dropped": dropped, "keep_since": float(floor)}


def grant(conn: Any, login: str, kind: str) -> None:
    """Make the existing login role ``login`` a member of the writer or reader role."""
    role = {"writer": WRITER_ROLE, "reader": READER_ROLE}[kind]
    from psycopg import sql

    with conn.transaction():
        conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(role), sql.Identifier(login)))
