"""The PostgreSQL schema: versioned migrations, day partitions, roles, retention.

Everything lives in schema ``mcplens``, owned by whoever runs ``mcplens db upgrade`` (an admin role).

* ``events``: one column per event field, named as the reading side names them (store/base.FIELDS),
  partitioned by range on ``time`` (epoch seconds), one partition per UTC day; unique on
  ``(event_id, time)`` so a replayed batch inserts nothing twice (``ON CONFLICT DO NOTHING``).
* ``batches`` / ``batch_files`` (schema 3): the rollups, as the local store's own Parquet batches
  and rollup files (store/rollup.py, store/windows.py), made from closed hours by ``mcplens db
  rollup`` and mirrored by readers (see :mod:`.mirror`); ``settings.rolled_until`` says up to where.
  (Schemas 1 and 2 kept hourly per-tool rollups in PostgreSQL tables, updated on every insert: half
  the database's ingest cost, and only the per-tool table could use them.)
* Roles: ``mcplens_writer`` may INSERT into ``events`` and ``stage`` and call the helper functions
  (partitions, retention floor, the replay merge), nothing else: it cannot SELECT.
  ``mcplens_reader`` may SELECT, nothing else. Login roles are made members of one of them.
  ``mcplens db rollup`` runs as the admin role.
* ``ensure_partitions(days)``: SECURITY DEFINER, so a writer can have the day partitions it needs
  created without DDL rights; ``keep_since()``: the retention floor, so a late replay does not bring
  back a dropped day.

Migrations are a list; ``upgrade`` applies the missing ones in order, each in its own transaction,
under an advisory lock (two replicas upgrading at once do it once).
"""

from __future__ import annotations

import time
from typing import Any, Final

from mcplens.store.postgres.frozen import MIGRATION_1, MIGRATION_2

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


_MIGRATION_3: Final = f"""
CREATE OR REPLACE FUNCTION {SCHEMA}.merge_stage() RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER
SET search_path = {SCHEMA}, pg_temp AS $fn$
DECLARE added bigint;
BEGIN
  WITH s AS (DELETE FROM {SCHEMA}.stage RETURNING *)
  INSERT INTO {SCHEMA}.events SELECT * FROM s WHERE time >= {SCHEMA}.keep_since() ON CONFLICT DO NOTHING;
  GET DIAGNOSTICS added = ROW_COUNT;
  RETURN added;
END $fn$;
CREATE OR REPLACE FUNCTION {SCHEMA}.add_rollups(deltas jsonb) RETURNS void LANGUAGE plpgsql AS $fn$
BEGIN
  -- kept for writers of schema 2 during a rolling upgrade: their deltas are no longer needed
END $fn$;
DROP VIEW {SCHEMA}.rollup_hist;
DROP TABLE {SCHEMA}.rollup_hists, {SCHEMA}.rollup_calls;
DROP FUNCTION {SCHEMA}.hist_add(integer, bigint[], integer, bigint[]), {SCHEMA}.hist_dense(integer[], bigint[]),
  {SCHEMA}.roll_up();
DROP INDEX {SCHEMA}.events_session;
CREATE TABLE {SCHEMA}.batches (
  name text PRIMARY KEY, lo double precision NOT NULL, hi double precision NOT NULL, events bigint NOT NULL,
  manifest jsonb NOT NULL, made timestamptz NOT NULL DEFAULT clock_timestamp());
CREATE INDEX batches_hi ON {SCHEMA}.batches (hi);
CREATE TABLE {SCHEMA}.batch_files (
  batch text NOT NULL REFERENCES {SCHEMA}.batches ON DELETE CASCADE, name text NOT NULL, data bytea NOT NULL,
  PRIMARY KEY (batch, name));
ALTER TABLE {SCHEMA}.batch_files ALTER COLUMN data SET STORAGE EXTERNAL;
INSERT INTO {SCHEMA}.settings VALUES ('store_id', md5(random()::text || clock_timestamp()::text))
  ON CONFLICT (key) DO NOTHING;
GRANT SELECT ON {SCHEMA}.batches, {SCHEMA}.batch_files, {SCHEMA}.settings TO {READER_ROLE};
"""


#: (version, what, SQL). Append only: a released migration never changes (1 and 2 are frozen text).
MIGRATIONS: Final[list[tuple[int, str, str]]] = [
    (1, "events partitioned by day, hourly rollups, helper functions, writer and reader roles", MIGRATION_1),
    (2, "writers COPY typed rows and add rollup deltas per batch (no per-row trigger); stage + merge for replays; "
        "one histogram row per hour, key and measure", MIGRATION_2),
    (3, "rollups made by `mcplens db rollup` as the local store's batches and rollup files (batches, batch_files); "
        "writers add no rollup deltas; no session index", _MIGRATION_3),
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
            conn.execute(sql)
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
        conn.execute(f"DELETE FROM {SCHEMA}.batches WHERE hi <= %s", (float(floor),))  # their files cascade
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
