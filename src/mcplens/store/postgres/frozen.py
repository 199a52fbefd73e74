# ruff: noqa: E501, W293
"""Schema migrations 1 and 2, frozen as the literal SQL they applied (2026-11-28).

They used to be generated at run time (from ``event.COLUMNS``, ``mcplens.histogram``), so a later
change there would have altered a migration databases had already applied. A new event field needs
a new migration that adds its column; these texts never change.
"""

from typing import Final

MIGRATION_1: Final = """CREATE TABLE mcplens.events (
  "event_id" text COLLATE "C" NOT NULL,
  "kind" text COLLATE "C",
  "schema_version" integer,
  "time" double precision NOT NULL,
  "duration_s" double precision,
  "method" text COLLATE "C",
  "target" text COLLATE "C",
  "tool" text COLLATE "C",
  "prompt" text COLLATE "C",
  "resource_uri" text COLLATE "C",
  "operation" text COLLATE "C",
  "request_args" jsonb,
  "request_arguments" jsonb,
  "request_size" bigint,
  "request_id" text COLLATE "C",
  "status" text COLLATE "C",
  "error_type" text COLLATE "C",
  "rpc_code" text COLLATE "C",
  "error_category" text COLLATE "C",
  "error_message" text COLLATE "C",
  "redactions" jsonb,
  "response_size" bigint,
  "response_tokens" bigint,
  "response_items" bigint,
  "content_types" text[],
  "response_tool_names" text[],
  "response_tool_hashes" jsonb,
  "response_tool_hints" jsonb,
  "session_id" text COLLATE "C",
  "session_source" text COLLATE "C",
  "client_id" text COLLATE "C",
  "client_name" text COLLATE "C",
  "client_version" text COLLATE "C",
  "client_address" text COLLATE "C",
  "client_capabilities" text[],
  "transport" text COLLATE "C",
  "protocol_version" text COLLATE "C",
  "trace_id" text COLLATE "C",
  "span_id" text COLLATE "C",
  "parent_span_id" text COLLATE "C",
  "server_name" text COLLATE "C",
  "server_version" text COLLATE "C",
  "instance_id" text COLLATE "C",
  "capture" text COLLATE "C",
  "pid" bigint,
  "proxy_direction" text COLLATE "C",
  "proxy_error" text COLLATE "C",
  "proxy_protocol_errors" bigint,
  "proxy_message_bytes" bigint,
  "proxy_http_status" bigint,
  "health_enqueued" bigint,
  "health_written" bigint,
  "health_dropped" bigint,
  "health_faults" bigint,
  "health_write_failures" bigint,
  "process_cpu_time" double precision,
  "process_memory_usage" bigint,
  "process_start_time" double precision
) PARTITION BY RANGE (time)
;
CREATE UNIQUE INDEX events_id ON mcplens.events (event_id, time)
;
CREATE INDEX events_time ON mcplens.events USING brin (time)
;
CREATE INDEX events_session ON mcplens.events (session_id, time)
;
CREATE TYPE mcplens.raw_event AS ("event.id" text COLLATE "C", "event.kind" text COLLATE "C", "mcplens.schema" integer, "time" double precision, "duration_s" double precision, "mcp.method.name" text COLLATE "C", "mcplens.target" text COLLATE "C", "gen_ai.tool.name" text COLLATE "C", "gen_ai.prompt.name" text COLLATE "C", "mcp.resource.uri" text COLLATE "C", "gen_ai.operation.name" text COLLATE "C", "mcplens.request.args" jsonb, "mcplens.request.arguments" jsonb, "mcplens.request.size_bytes" bigint, "jsonrpc.request.id" text COLLATE "C", "mcplens.status" text COLLATE "C", "error.type" text COLLATE "C", "rpc.response.status_code" text COLLATE "C", "mcplens.error.category" text COLLATE "C", "mcplens.error.message" text COLLATE "C", "mcplens.redactions" jsonb, "mcplens.response.size_bytes" bigint, "mcplens.response.tokens_est" bigint, "mcplens.response.items" bigint, "mcplens.response.content_types" text[], "mcplens.response.tool_names" text[], "mcplens.response.tool_hashes" jsonb, "mcplens.response.tool_hints" jsonb, "mcp.session.id" text COLLATE "C", "mcplens.session.source" text COLLATE "C", "mcplens.client.id" text COLLATE "C", "mcplens.client.name" text COLLATE "C", "mcplens.client.version" text COLLATE "C", "client.address" text COLLATE "C", "mcplens.client.capabilities" text[], "network.transport" text COLLATE "C", "mcp.protocol.version" text COLLATE "C", "trace_id" text COLLATE "C", "span_id" text COLLATE "C", "parent_span_id" text COLLATE "C", "mcplens.server.name" text COLLATE "C", "mcplens.server.version" text COLLATE "C", "mcplens.instance.id" text COLLATE "C", "mcplens.capture" text COLLATE "C", "process.pid" bigint, "mcplens.proxy.direction" text COLLATE "C", "mcplens.proxy.error" text COLLATE "C", "mcplens.proxy.protocol_errors" bigint, "mcplens.proxy.message_bytes" bigint, "mcplens.proxy.http_status" bigint, "mcplens.health.enqueued" bigint, "mcplens.health.written" bigint, "mcplens.health.dropped" bigint, "mcplens.health.faults" bigint, "mcplens.health.write_failures" bigint, "process.cpu.time" double precision, "process.memory.usage" bigint, "process.start_time" double precision)
;

CREATE TABLE mcplens.rollup_calls (
  hour double precision NOT NULL, server text COLLATE "C", method text COLLATE "C", target text COLLATE "C",
  status text COLLATE "C",
  calls bigint NOT NULL, dur_n bigint NOT NULL, dur_sum double precision NOT NULL, size_max bigint,
  UNIQUE NULLS NOT DISTINCT (hour, server, method, target, status));
CREATE TABLE mcplens.rollup_hist (
  hour double precision NOT NULL, server text COLLATE "C", method text COLLATE "C", target text COLLATE "C",
  measure "char" NOT NULL,
  idx integer NOT NULL, n bigint NOT NULL,
  UNIQUE NULLS NOT DISTINCT (hour, server, method, target, measure, idx));

;

CREATE TABLE mcplens.settings (key text PRIMARY KEY, value text NOT NULL);
CREATE FUNCTION mcplens.keep_since() RETURNS double precision LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = mcplens, pg_temp AS $fn$
  SELECT coalesce((SELECT value::double precision FROM mcplens.settings WHERE key = 'keep_since'), 0)
$fn$;
CREATE FUNCTION mcplens.ensure_partitions(days integer[]) RETURNS integer LANGUAGE plpgsql SECURITY DEFINER
SET search_path = mcplens, pg_temp AS $fn$
DECLARE d integer; made integer := 0; floor_day integer;
BEGIN
  IF cardinality(days) > 62 THEN RAISE EXCEPTION 'too many days at once (%)', cardinality(days); END IF;
  floor_day := floor(mcplens.keep_since() / 86400);
  PERFORM pg_advisory_xact_lock(7160101100);
  FOREACH d IN ARRAY days LOOP
    CONTINUE WHEN d < floor_day OR d < 0 OR d > 200000;
    IF to_regclass(format('mcplens.events_%s', to_char(to_timestamp(d::double precision * 86400) AT TIME ZONE 'UTC',
                                                     'YYYYMMDD'))) IS NULL THEN
      EXECUTE format('CREATE TABLE mcplens.%I PARTITION OF mcplens.events FOR VALUES FROM (%s) TO (%s)',
                     'events_' || to_char(to_timestamp(d::double precision * 86400) AT TIME ZONE 'UTC', 'YYYYMMDD'),
                     d::bigint * 86400, (d::bigint + 1) * 86400);
      made := made + 1;
    END IF;
  END LOOP;
  RETURN made;
END $fn$;

;

CREATE FUNCTION mcplens.roll_up() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
SET search_path = mcplens, pg_temp AS $fn$
BEGIN
  INSERT INTO mcplens.rollup_calls AS r (hour, server, method, target, status, calls, dur_n, dur_sum, size_max)
  SELECT floor(time / 3600) * 3600, server_name, method, target, status,
         count(*), count(duration_s), coalesce(sum(duration_s), 0), max(response_size)
  FROM new_rows WHERE kind = 'request' AND proxy_direction IS NULL
  GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5
  ON CONFLICT (hour, server, method, target, status) DO UPDATE SET calls = r.calls + excluded.calls, dur_n = r.dur_n + excluded.dur_n,
    dur_sum = r.dur_sum + excluded.dur_sum, size_max = greatest(r.size_max, excluded.size_max);
  INSERT INTO mcplens.rollup_hist AS r (hour, server, method, target, measure, idx, n)
  SELECT floor(time / 3600) * 3600, server_name, method, target, v.measure, v.idx, count(*)
  FROM new_rows CROSS JOIN LATERAL (VALUES
    ('d'::"char", (CASE WHEN duration_s * 1000000.0 IS NULL THEN NULL WHEN duration_s * 1000000.0 < 1 THEN 0 ELSE 1 + CAST(floor(ln(duration_s * 1000000.0) / ln(2.0) * 8) AS INTEGER) END)), ('s'::"char", (CASE WHEN response_size IS NULL THEN NULL WHEN response_size < 1 THEN 0 ELSE 1 + CAST(floor(ln(response_size) / ln(2.0) * 8) AS INTEGER) END)), ('t'::"char", (CASE WHEN response_tokens IS NULL THEN NULL WHEN response_tokens < 1 THEN 0 ELSE 1 + CAST(floor(ln(response_tokens) / ln(2.0) * 8) AS INTEGER) END))
  ) AS v(measure, idx)
  WHERE kind = 'request' AND proxy_direction IS NULL AND v.idx IS NOT NULL
  GROUP BY 1, 2, 3, 4, 5, 6 ORDER BY 1, 2, 3, 4, 5, 6
  ON CONFLICT (hour, server, method, target, measure, idx) DO UPDATE SET n = r.n + excluded.n;
  RETURN NULL;
END $fn$;
CREATE TRIGGER roll_up AFTER INSERT ON mcplens.events REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION mcplens.roll_up();

;

DO $do$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'mcplens_writer') THEN CREATE ROLE mcplens_writer NOLOGIN; END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'mcplens_reader') THEN CREATE ROLE mcplens_reader NOLOGIN; END IF;
END $do$;
REVOKE ALL ON SCHEMA mcplens FROM PUBLIC;
REVOKE ALL ON FUNCTION mcplens.ensure_partitions(integer[]), mcplens.keep_since(), mcplens.roll_up() FROM PUBLIC;
GRANT USAGE ON SCHEMA mcplens TO mcplens_writer, mcplens_reader;
GRANT INSERT ON mcplens.events TO mcplens_writer;
GRANT EXECUTE ON FUNCTION mcplens.ensure_partitions(integer[]), mcplens.keep_since() TO mcplens_writer;
GRANT USAGE ON TYPE mcplens.raw_event TO mcplens_writer;
DO $do$ BEGIN EXECUTE format('GRANT TEMPORARY ON DATABASE %I TO mcplens_writer', current_database()); END $do$;
GRANT SELECT ON mcplens.events, mcplens.rollup_calls, mcplens.rollup_hist, mcplens.schema_version
  TO mcplens_reader;
"""

MIGRATION_2: Final = """
DROP TRIGGER roll_up ON mcplens.events;
ALTER TABLE mcplens.events ADD COLUMN "health_sent" bigint, ADD COLUMN "health_spooled" bigint, ADD COLUMN "health_replayed" bigint, ADD COLUMN "health_rejected" bigint;
CREATE UNLOGGED TABLE mcplens.stage (LIKE mcplens.events);
CREATE FUNCTION mcplens.hist_add(lo1 integer, n1 bigint[], lo2 integer, n2 bigint[]) RETURNS bigint[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$
  SELECT array_agg(coalesce(n1[i - lo1 + 1], 0) + coalesce(n2[i - lo2 + 1], 0) ORDER BY i)
  FROM generate_series(least(lo1, lo2), greatest(lo1 + cardinality(n1), lo2 + cardinality(n2)) - 1) AS g(i)
$fn$;
CREATE FUNCTION mcplens.hist_dense(idx integer[], n bigint[]) RETURNS bigint[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$
  SELECT array_agg(coalesce(m.n, 0) ORDER BY g.i)
  FROM generate_series((SELECT min(x) FROM unnest(idx) AS x), (SELECT max(x) FROM unnest(idx) AS x)) AS g(i)
  LEFT JOIN unnest(idx, n) AS m(i, n) USING (i)
$fn$;
CREATE TABLE mcplens.rollup_hists (
  hour double precision NOT NULL, server text COLLATE "C", method text COLLATE "C", target text COLLATE "C",
  measure "char" NOT NULL, lo integer NOT NULL, counts bigint[] NOT NULL,
  UNIQUE NULLS NOT DISTINCT (hour, server, method, target, measure));
INSERT INTO mcplens.rollup_hists
  SELECT hour, server, method, target, measure, min(idx), mcplens.hist_dense(array_agg(idx), array_agg(n))
  FROM mcplens.rollup_hist GROUP BY 1, 2, 3, 4, 5;
DROP TABLE mcplens.rollup_hist;
CREATE VIEW mcplens.rollup_hist AS
  SELECT h.hour, h.server, h.method, h.target, h.measure, h.lo + u.k::integer - 1 AS idx, u.n
  FROM mcplens.rollup_hists h CROSS JOIN LATERAL unnest(h.counts) WITH ORDINALITY AS u(n, k) WHERE u.n > 0;
CREATE FUNCTION mcplens.add_rollups(deltas jsonb) RETURNS void LANGUAGE plpgsql SECURITY DEFINER
SET search_path = mcplens, pg_temp AS $fn$
BEGIN
  IF EXISTS (SELECT FROM jsonb_array_elements(deltas -> 'c') AS e
             WHERE NOT ((e ->> 5)::bigint > 0 AND (e ->> 6)::bigint BETWEEN 0 AND (e ->> 5)::bigint))
     OR EXISTS (SELECT FROM jsonb_array_elements(deltas -> 'h') AS e
                WHERE NOT (e ->> 4 IN ('d', 's', 't') AND 0 <= ALL ((e ->> 6)::bigint[])
                           AND cardinality((e ->> 6)::bigint[]) > 0)) THEN
    RAISE EXCEPTION 'mcplens rollup deltas only add' USING ERRCODE = 'data_exception';
  END IF;
  INSERT INTO mcplens.rollup_calls AS r (hour, server, method, target, status, calls, dur_n, dur_sum, size_max)
  SELECT (e ->> 0)::double precision, e ->> 1, e ->> 2, e ->> 3, e ->> 4, (e ->> 5)::bigint, (e ->> 6)::bigint,
         (e ->> 7)::double precision, (e ->> 8)::bigint
  FROM jsonb_array_elements(deltas -> 'c') AS e ORDER BY 1, 2, 3, 4, 5
  ON CONFLICT (hour, server, method, target, status) DO UPDATE SET calls = r.calls + excluded.calls, dur_n = r.dur_n + excluded.dur_n,
    dur_sum = r.dur_sum + excluded.dur_sum, size_max = greatest(r.size_max, excluded.size_max);
  INSERT INTO mcplens.rollup_hists AS r (hour, server, method, target, measure, lo, counts)
  SELECT (e ->> 0)::double precision, e ->> 1, e ->> 2, e ->> 3, (e ->> 4)::"char", (e ->> 5)::integer,
         (e ->> 6)::bigint[]
  FROM jsonb_array_elements(deltas -> 'h') AS e ORDER BY 1, 2, 3, 4, 5
  ON CONFLICT (hour, server, method, target, measure) DO UPDATE SET lo = least(r.lo, excluded.lo),
    counts = mcplens.hist_add(r.lo, r.counts, excluded.lo, excluded.counts);
END $fn$;
CREATE FUNCTION mcplens.merge_stage() RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER
SET search_path = mcplens, pg_temp AS $fn$
DECLARE added bigint;
BEGIN
  -- the rows this transaction staged: no transaction's staged rows are ever committed
  CREATE TEMP TABLE IF NOT EXISTS merged (LIKE mcplens.events) ON COMMIT DELETE ROWS;
  WITH s AS (DELETE FROM mcplens.stage RETURNING *),
       ins AS (INSERT INTO mcplens.events SELECT * FROM s WHERE time >= mcplens.keep_since()
               ON CONFLICT DO NOTHING RETURNING *)
  INSERT INTO pg_temp.merged SELECT * FROM ins;
  GET DIAGNOSTICS added = ROW_COUNT;
  
  INSERT INTO mcplens.rollup_calls AS r (hour, server, method, target, status, calls, dur_n, dur_sum, size_max)
  SELECT floor(time / 3600) * 3600, server_name, method, target, status,
         count(*), count(duration_s), coalesce(sum(duration_s), 0), max(response_size)
  FROM pg_temp.merged WHERE kind = 'request' AND proxy_direction IS NULL
  GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5
  ON CONFLICT (hour, server, method, target, status) DO UPDATE SET calls = r.calls + excluded.calls, dur_n = r.dur_n + excluded.dur_n,
    dur_sum = r.dur_sum + excluded.dur_sum, size_max = greatest(r.size_max, excluded.size_max);
  INSERT INTO mcplens.rollup_hists AS r (hour, server, method, target, measure, lo, counts)
  SELECT h, s, m, t, measure, min(idx), mcplens.hist_dense(array_agg(idx), array_agg(n)) FROM (
    SELECT floor(time / 3600) * 3600 AS h, server_name AS s, method AS m, target AS t, v.measure, v.idx,
           count(*) AS n
    FROM pg_temp.merged CROSS JOIN LATERAL (VALUES ('d'::"char", (CASE WHEN duration_s * 1000000.0 IS NULL THEN NULL WHEN duration_s * 1000000.0 < 1 THEN 0 ELSE 1 + CAST(floor(ln(duration_s * 1000000.0) / ln(2.0) * 8) AS INTEGER) END)), ('s'::"char", (CASE WHEN response_size IS NULL THEN NULL WHEN response_size < 1 THEN 0 ELSE 1 + CAST(floor(ln(response_size) / ln(2.0) * 8) AS INTEGER) END)), ('t'::"char", (CASE WHEN response_tokens IS NULL THEN NULL WHEN response_tokens < 1 THEN 0 ELSE 1 + CAST(floor(ln(response_tokens) / ln(2.0) * 8) AS INTEGER) END))) AS v(measure, idx)
    WHERE kind = 'request' AND proxy_direction IS NULL AND v.idx IS NOT NULL GROUP BY 1, 2, 3, 4, 5, 6) x
  GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5
  ON CONFLICT (hour, server, method, target, measure) DO UPDATE SET lo = least(r.lo, excluded.lo),
    counts = mcplens.hist_add(r.lo, r.counts, excluded.lo, excluded.counts);
  DELETE FROM pg_temp.merged;
  RETURN added;
END $fn$;
REVOKE ALL ON FUNCTION mcplens.add_rollups(deltas jsonb), mcplens.merge_stage() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION mcplens.add_rollups(deltas jsonb), mcplens.merge_stage() TO mcplens_writer;
GRANT INSERT ON mcplens.stage TO mcplens_writer;
GRANT SELECT ON mcplens.rollup_hists, mcplens.rollup_hist TO mcplens_reader;
DO $do$ BEGIN EXECUTE format('REVOKE TEMPORARY ON DATABASE %I FROM mcplens_writer', current_database()); END $do$;
"""
