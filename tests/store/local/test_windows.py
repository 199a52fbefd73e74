"""Window rollups (store/windows.py, store/local/windows.py): every figure read from the stored
per-bucket rows + the window's partial edge buckets + the uncompacted tail equals the same figure
computed by a plain scan of the window's events (the SQL the store ran before the rollups, kept
here as the reference). The windows start and end mid-bucket, on bucket, hour and day boundaries,
inside one bucket, open-ended, and inside the tail; sessions cross batches and the tail; so a bucket
dropped or counted twice anywhere changes some figure.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from mcplens import event as ev
from mcplens import histogram
from mcplens.dashboard import data, series
from mcplens.store.base import TimeWindow
from mcplens.store.local import LocalStore
from mcplens.store.local import windows as W
from mcplens.store.sql import ERROR, NOT_HEALTH, window_where
from tests.store.factory import health, request, write

T0 = 1_790_000_000.0 + 1234.567  # not on any bucket, hour or day boundary
DAY = 86400.0
B = 300.0
TOOLS = ("search", "fetch", "store", "summarize", "send_mail", "lookup")
STATUSES = (ev.OK,) * 12 + (ev.TOOL_ERROR, ev.TIMEOUT, ev.RATE_LIMITED, ev.UNAUTHORIZED, ev.EXCEPTION)


def _events(seed: int = 3) -> list[dict[str, Any]]:
    """~2.6 days: sessions of a few minutes to several hours on two servers and three instances,
    calls of all statuses (some with the same start time), prompts and lists, health records."""
    rnd = random.Random(seed)
    out: list[dict[str, Any]] = []
    for s in range(140):
        start = T0 + rnd.uniform(0, 2.5 * DAY)
        server = "files" if s % 3 else "crm"
        inst = ("inst-a", "inst-b", "inst-c")[s % 3]
        t = start
        for _ in range(rnd.randint(1, 30)):
            t += rnd.choice((0.0, rnd.uniform(1, 40), rnd.uniform(60, 900), rnd.uniform(900, 4000)))
            status = rnd.choice(STATUSES)
            method = rnd.choice(("tools/call",) * 8 + ("prompts/get", "tools/list"))
            target = rnd.choice(TOOLS) if method == "tools/call" else ("triage" if method == "prompts/get" else None)
            e = request(t, method=method, target=target, status=status, duration=rnd.lognormvariate(-3, 1.2),
                        size=rnd.randint(10, 60_000), server=server, instance=inst,
                        session=None if s % 17 == 0 else f"sess{s:03d}",
                        client=(f"agent-{s % 5}", f"1.{s % 3}"))
            if status != ev.OK:
                e[ev.ERROR_MESSAGE] = rnd.choice(("backend down", "bad input", None))
            out.append(e)
    for k, inst in enumerate(("inst-a", "inst-b", "inst-c")):
        for j in range(0, int(2.6 * DAY), 420 + 60 * k):
            out.append(health(inst, T0 + j + k, server="crm" if k == 0 else "files", written=j, enqueued=j + k))
    return sorted(out, key=lambda e: e[ev.TIME])


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, LocalStore]:
    """Three batches compacted one after another (sessions cross them) and a tail left as segments;
    and the same events all compacted."""
    evs = _events()
    cuts = [int(len(evs) * f) for f in (0.35, 0.7, 0.9)]
    # a batch holds what was written before the next one (store/rollup.py's assumption): calls with the
    # same start time stay in one batch, as they would (their order among themselves is by event id)
    cuts = [next(i for i in range(c, len(evs)) if evs[i][ev.TIME] != evs[i - 1][ev.TIME]) for c in cuts]
    parts = [evs[: cuts[0]], evs[cuts[0]: cuts[1]], evs[cuts[1]: cuts[2]], evs[cuts[2]:]]
    tailed = tmp_path_factory.mktemp("tailed")
    full = tmp_path_factory.mktemp("full")
    for i, part in enumerate(parts):
        for home in (tailed, full):
            write(home, part, instance=f"w{i}")
            if i < 3 or home is full:
                assert LocalStore(home).compact().events == len(part)
    out = {"tailed": LocalStore(tailed), "full": LocalStore(full)}
    snap = out["tailed"].snapshot()
    assert len(snap.parquet) == 3 and snap.segments and snap.rollups is not None
    return out


END = T0 + 2.6 * DAY
WINDOWS = [
    None,
    TimeWindow(T0 + 0.3 * DAY + 17.25, None),  # open end, mid-bucket start
    TimeWindow(None, T0 + 1.7 * DAY + 101.5),  # open start
    TimeWindow(T0 + 3 * 3600 + 11.0, T0 + 1.9 * DAY + 77.7),  # mid-bucket both ends, days inside
    TimeWindow(math.floor(T0 / B + 40) * B, math.floor(T0 / B + 700) * B),  # on bucket boundaries
    TimeWindow(math.ceil(T0 / 3600 + 5) * 3600, math.ceil(T0 / 3600 + 29) * 3600),  # on hour boundaries
    TimeWindow(math.ceil(T0 / DAY) * DAY, math.ceil(T0 / DAY) * DAY + DAY),  # one whole UTC day
    TimeWindow(T0 + DAY + 10.0, T0 + DAY + 250.0),  # inside one bucket (or two)
    TimeWindow(T0 + 2.2 * DAY + 33.3, END + 10),  # the newest batch's end and the tail
    TimeWindow(T0 + 2.45 * DAY + 1.1, END + 10),  # the tail mostly
]

# ---- the reference: a scan of the window's events (the store's SQL before the rollups) --------

_TOOL_TABLE = """
SELECT server_name AS server, method, target, count(*) AS calls, count(*) FILTER (WHERE {err}) AS errors,
       avg(duration_s) * 1000 AS mean_ms, max(response_size) AS payload_max_bytes, histogram(status) AS statuses,
       list(duration_s) FILTER (WHERE duration_s IS NOT NULL) AS durations,
       list(response_size) FILTER (WHERE response_size IS NOT NULL) AS sizes,
       list(response_tokens) FILTER (WHERE response_tokens IS NOT NULL) AS tokens
FROM events WHERE {where} GROUP BY ALL"""

_SESSIONS = """
SELECT session_id, max(client_name) AS client_name, max(client_version) AS client_version,
       max(server_name) AS server, max(transport) AS transport, min(time) AS first_seen, max(time) AS last_seen,
       count(*) FILTER (WHERE kind = 'request') AS calls, count(*) FILTER (WHERE kind = 'request' AND {err}) AS errors,
       list(DISTINCT tool ORDER BY tool) FILTER (WHERE tool IS NOT NULL) AS tools
FROM events WHERE {where} GROUP BY 1 ORDER BY last_seen DESC, session_id"""

_HEALTH = """
WITH h AS (
    SELECT instance_id, server_name AS server, pid, time, health_enqueued AS enqueued, health_written AS written,
           health_dropped AS dropped, health_faults AS faults, health_write_failures AS write_failures
    FROM events WHERE {where}
    QUALIFY row_number() OVER (PARTITION BY instance_id ORDER BY time DESC, event_id DESC) = 1),
n AS (SELECT instance_id, count(*) AS events FROM events
      WHERE kind IS DISTINCT FROM '{health}' AND instance_id IN (SELECT instance_id FROM h) GROUP BY 1)
SELECT h.instance_id, server, pid, time, coalesce(n.events, 0) AS events, enqueued, written, dropped, faults,
       write_failures
FROM h LEFT JOIN n USING (instance_id) ORDER BY server, time, instance_id"""


def _q(values: list[float], q: float, scale: float = 1.0) -> float | None:
    """The histogram's nearest-rank quantile of raw values, in Python (mcplens.histogram)."""
    counts = Counter(histogram.index(v * scale) for v in values)
    return histogram.quantile(counts, q)


def _scan_tools(store: LocalStore, window: TimeWindow | None) -> dict[tuple[Any, ...], dict[str, Any]]:
    where, params = window_where(window, None, "kind = 'request' AND proxy_direction IS NULL")
    out = {}
    for r in store.query(_TOOL_TABLE.format(where=where, err=ERROR), params):
        d = r.pop("durations") or []
        s, t = r.pop("sizes") or [], r.pop("tokens") or []
        r["p50_ms"], r["p95_ms"], r["p99_ms"] = (None if not d else _q(d, q, 1e6) / 1000 for q in (0.5, 0.95, 0.99))
        r["payload_p50_bytes"], r["payload_p95_bytes"] = _q(s, 0.5), _q(s, 0.95)
        r["tokens_p50"], r["tokens_p95"] = _q(t, 0.5), _q(t, 0.95)
        out[(r["server"], r["method"], r["target"])] = r
    return out


@pytest.mark.parametrize("state", ["tailed", "full"])
def test_report_from_rollups_equals_a_scan(stores: dict[str, LocalStore], state: str) -> None:
    store = stores[state]
    store.exact_up_to = 0  # the rollup path, as over millions of calls
    try:
        for window in WINDOWS:
            got = {(r["server"], r["method"], r["target"]): r for r in store.tool_table(window)}
            want = _scan_tools(store, window)
            assert got.keys() == want.keys(), window
            assert sum(r["calls"] for r in got.values()) > 0
            for key, w in want.items():
                g = got[key]
                for f in ("calls", "errors", "payload_max_bytes", "statuses", "p50_ms", "p95_ms", "p99_ms",
                          "payload_p50_bytes", "payload_p95_bytes", "tokens_p50", "tokens_p95"):
                    assert g[f] == w[f], (window, key, f, g[f], w[f])
                # durations summed in whole microseconds
                assert math.isclose(g["mean_ms"], w["mean_ms"], rel_tol=0, abs_tol=1e-3), (window, key)
    finally:
        store.exact_up_to = LocalStore(store.home).exact_up_to


def test_small_windows_get_exact_percentiles(stores: dict[str, LocalStore]) -> None:
    """Below ``exact_up_to`` calls the report's percentiles are quantile_cont's, as before."""
    store = stores["tailed"]
    window = WINDOWS[3]
    where, params = window_where(window, None, "kind = 'request' AND proxy_direction IS NULL")
    want = {(r["server"], r["method"], r["target"]): r for r in store.query(
        f"SELECT server_name AS server, method, target, quantile_cont(duration_s, 0.95) * 1000 AS p95 FROM events "
        f"WHERE {where} GROUP BY ALL", params)}
    got = store.tool_table(window)
    assert got and all(r["p95_ms"] == want[(r["server"], r["method"], r["target"])]["p95"] for r in got)


@pytest.mark.parametrize("state", ["tailed", "full"])
def test_sessions_and_health_from_rollups_equal_a_scan(stores: dict[str, LocalStore], state: str) -> None:
    store = stores[state]
    for window in WINDOWS:
        for server in (None, "crm"):
            where, params = window_where(window, server, f"{NOT_HEALTH} AND session_id IS NOT NULL")
            want = [{**r, "tools": r["tools"] or []}
                    for r in store.query(_SESSIONS.format(where=where, err=ERROR), params)]
            assert store.sessions(window, server, limit=None) == want, (window, server)
            for limit in (1, 7, 50):
                assert store.sessions(window, server, limit=limit) == want[:limit], (window, server, limit)
        where, params = window_where(window, None, f"kind = '{ev.HEALTH_KIND}'")
        want = store.query(_HEALTH.format(where=where, health=ev.HEALTH_KIND), params)
        assert want and store.health(window) == want, window


@pytest.mark.parametrize("state", ["tailed", "full"])
def test_dashboard_errors_and_flows_from_rollups_equal_a_scan(stores: dict[str, LocalStore], state: str) -> None:
    store = stores[state]
    for window in [w for w in WINDOWS if w is not None and w.since is not None and w.until is not None]:
        for tool in ("fetch", "tools/list"):
            where, params = window_where(window, None, f"kind = 'request' AND proxy_direction IS NULL AND {ERROR} "
                                         "AND coalesce(target, method) = ?")
            want = store.query(
                "SELECT error_category AS category, error_type, error_message AS message, count(*) AS n, "
                f"max(time) AS last FROM events WHERE {where} GROUP BY ALL", [tool, *params])
            key = lambda r: (r["category"] or "", r["error_type"] or "", r["message"] or "")  # noqa: E731
            assert sorted(data.tool_errors(store, window, tool), key=key) == sorted(want, key=key), (window, tool)
        # flows: over the chart's grid (whole buckets; whole hours when its slots are hours)
        grid = series.Grid.of(window.since, window.until)
        end = ((grid.b1 // 12 + 1) * 12 if grid.hourly else grid.b1 + 1) * B
        where, params = window_where(TimeWindow(grid.b0 * B, end), None,
                                     "kind = 'request' AND method = 'tools/call' AND session_id IS NOT NULL")
        want = store.query(
            f"""SELECT src, dst, count(*) AS n, count(DISTINCT sid) AS sessions FROM (
                    SELECT session_id AS sid, target AS dst,
                           lag(target) OVER (PARTITION BY session_id ORDER BY time, event_id) AS src
                    FROM events WHERE {where}) WHERE src IS NOT NULL GROUP BY ALL""", params)
        got = data.flows(store, window)["edges"]
        assert want
        if state == "full":
            assert sorted(got, key=str) == sorted(want, key=str), window
        else:  # with a tail, a session taking a transition before and after the last compaction counts twice
            assert {(r["src"], r["dst"]): r["n"] for r in got} == {(r["src"], r["dst"]): r["n"] for r in want}, window
            sessions = {(r["src"], r["dst"]): r["sessions"] for r in want}
            assert all(r["sessions"] >= sessions[(r["src"], r["dst"])] for r in got)


def test_a_batch_without_rollups_is_scanned(stores: dict[str, LocalStore], tmp_path: Path) -> None:
    """The scan path (what a store with a batch from an older mcplens reads) gives the same rows."""
    store = stores["tailed"]
    for window in WINDOWS[1:5]:
        rolled = W.read(store, window, lambda w: W.sessions(w, None, None))
        scanned = W.read(store, window, lambda w: W.sessions(w, None, None), scan=True)
        assert rolled == scanned
        assert W.read(store, window, lambda w: w.rolled) and not W.read(store, window, lambda w: w.rolled, scan=True)


def test_split_tiles_the_buckets_once() -> None:
    """Days, hours and 5-minute ranges cover [lo, hi) exactly once, for any ends."""
    rnd = random.Random(1)
    sizes = {"_d": 288, "_h": 12, "": 1}
    for _ in range(3000):
        lo = rnd.randint(0, 3000)
        hi = lo + rnd.choice((0, 1, 5, 11, 12, 13, 200, 287, 288, 289, 700, 2000))
        seen: Counter[int] = Counter()
        for suffix, a, b in W.split(lo, hi):
            assert a is not None and b is not None and a % sizes[suffix] == 0 and b % sizes[suffix] == 0
            for row in range(a, b, sizes[suffix]):
                seen.update(range(row, row + sizes[suffix]))
        assert seen == Counter(range(lo, hi)), (lo, hi)
    assert W.split(None, None) == [("_d", None, None)]
    assert [s for s, _, _ in W.split(5, None)] == ["_d", "_h", ""]


def test_threads_share_one_database_but_not_temp_views() -> None:
    """Each thread reads on its own kept connection (temporary views never clash), all of one database,
    so the Parquet footers cached by one thread's read serve the next request on another thread."""
    import threading

    seen: dict[str, Any] = {}

    def run(name: str, value: int) -> None:
        with W.connection() as con:
            con.execute(f"CREATE OR REPLACE TEMP VIEW probe AS SELECT {value} AS v")
            barrier.wait(timeout=30)  # both views exist before either is read
            seen[name] = (con.execute("SELECT v FROM probe").fetchone()[0], id(con))

    barrier = threading.Barrier(2)
    threads = [threading.Thread(target=run, args=(n, v)) for n, v in (("a", 1), ("b", 2))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert seen["a"][0] == 1 and seen["b"][0] == 2 and seen["a"][1] != seen["b"][1]
    with W.connection() as con:  # a table (not temporary) made on this thread's connection ...
        con.execute("CREATE OR REPLACE TABLE shared_probe AS SELECT 7 AS v")
    out: list[int] = []
    t = threading.Thread(target=lambda: out.append(W._connection().execute("SELECT v FROM shared_probe").fetchone()[0]))
    t.start()
    t.join(30)
    with W.connection() as con:
        con.execute("DROP TABLE shared_probe")
    assert out == [7]  # ... is seen from another thread's: one database


@pytest.mark.parametrize("state", ["tailed", "full"])
def test_session_page_from_the_sessions_rollup_equals_a_scan(stores: dict[str, LocalStore], state: str) -> None:
    """A session's page reads only the batches whose ``wsessions`` rows name it (and the tail, as JSON
    lines or as the dashboard's Parquet copy): the same events as a scan of every file, for sessions
    within one batch, across batches and into the tail, and for prefixes naming several or none."""
    store = stores[state]
    sql = (f"SELECT *, session_id AS session FROM events WHERE {NOT_HEALTH} AND starts_with(session_id, ?) "
           "ORDER BY time, event_id")
    ids = sorted({r["session_id"] for r in store.sessions(None, None, limit=None)})
    for prefix in [*ids, "sess01", "sess1", "sess", "nosuch"]:
        want = store.query(sql, [prefix])
        got = store.session_events(prefix)
        assert [e["event_id"] for e in got] == [r["event_id"] for r in want], prefix
        assert {e["session"] for e in got} == {r["session"] for r in want}, prefix
    if state == "tailed":  # the dashboard made the segments' Parquet copies: read from them
        data.tools(store, TimeWindow(T0, T0 + 3 * DAY))
        assert W.TAIL.made(list(store._snapshot_since(None).segments))
        for prefix in ids:
            assert [e["event_id"] for e in store.session_events(prefix)] == \
                [r["event_id"] for r in store.query(sql, [prefix])], prefix
