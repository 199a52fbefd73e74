"""One analysis, two stores: the same events in the local store and in PostgreSQL give the same
``report``, ``sessions``, ``health`` and ``insights`` (``--json``), before and after the local
compaction and ``mcplens db rollup``; and the per-tool table read from the rollups keeps every count
exact and each percentile within the histogram's stated error of the exact value at that rank."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

import pytest

from mcplens import event as ev
from mcplens import histogram
from mcplens.cli import main
from mcplens.store.base import TimeWindow
from mcplens.store.local.reader import LocalStore
from mcplens.store.postgres.store import PostgresStore
from mcplens.store.postgres.writer import PostgresWriter
from tests.analysis import workload
from tests.store import factory
from tests.store.postgres.conftest import Database

HOUR = 3600.0


def events() -> list[dict[str, Any]]:
    """A healthy fleet of two servers, plus a runaway client, a heavy-tailed tool, a loop, health records."""
    rnd = random.Random(11)
    out = workload.normal(5_000, days=2.0, seed=5)
    t0 = workload.T0 + 1.5 * workload.DAY
    for i in range(400):  # a client going from nothing to a burst: client and tool spikes
        out.append(workload.call(t0 + i * 4, "query_orders", session=f"burst{i // 40}", client="c-99",
                                 client_name="runaway", duration=rnd.lognormvariate(math.log(0.1), 1.5),
                                 size=rnd.randint(200, 40_000)))
    for i in range(30):  # the same call again and again
        out.append(workload.call(t0 + 50 + i, "translate", session="stuck-1", client="c-03", client_name="agent-03",
                                 args={"text": 5, "lang": 2}))
    for i in range(2_000):  # a second server, other instance
        out.append(factory.request(workload.T0 + i * 60, target=rnd.choice(("fetch", "store")), server="other",
                                   instance="ffee0011", session=f"o{i // 9}",
                                   status=ev.OK if rnd.random() > 0.05 else ev.TIMEOUT,
                                   duration=rnd.expovariate(20), size=rnd.randint(10, 5_000)))
    out.append(factory.health("a1b2c3d4e5f60718", workload.T0 + 2 * workload.DAY, enqueued=12_000, written=12_000))
    out.append(factory.health("ffee0011", workload.T0 + 2 * workload.DAY, server="other", enqueued=2_000,
                              written=1_990, dropped=10))
    out.sort(key=lambda e: e[ev.TIME])
    return out


@pytest.fixture(scope="module")
def data() -> list[dict[str, Any]]:
    return events()


def load_both(pg: Database, home: Path, evs: list[dict[str, Any]]) -> None:
    workload.write(home, evs)
    w = PostgresWriter(pg.writer, home / "pg-writer", "inst-same")
    for i in range(0, len(evs), 1000):
        assert w.write_batch(evs[i:i + 1000]) == len(evs[i:i + 1000])
    w.close()
    assert w.stats["sent"] == len(evs), w.stats


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    capsys.readouterr()
    assert main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


def close(a: Any, b: Any, path: str = "") -> None:
    """Equal, floats to 1e-9 relative (sums in another order)."""
    if isinstance(a, float) or isinstance(b, float):
        assert a is not None and b is not None and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9), (path, a, b)
    elif isinstance(a, dict) and isinstance(b, dict):
        assert a.keys() == b.keys(), (path, sorted(a), sorted(b))
        for k in a:
            close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), (path, len(a), len(b))
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            close(x, y, f"{path}[{i}]")
    else:
        assert a == b, (path, a, b)


COMMANDS = [
    ("report", "--json"),
    ("report", "--json", "--since", "2026-09-22T06:00Z", "--until", "2026-09-22T18:30Z", "--sort", "p99"),
    ("report", "--json", "--server", "other", "--tool", "f*"),
    ("sessions", "--json", "-n", "500"),
    ("sessions", "--json", "--since", "2026-09-22T00:00Z", "--server", "files", "-n", "5"),
    ("health", "--json"),
    ("insights", "--json"),
    ("insights", "--json", "--since", "2026-09-22T12:00Z"),
]


def test_same_json_from_both_stores(pg: Database, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                    data: list[dict[str, Any]]) -> None:
    home = tmp_path / "local"
    load_both(pg, home, data)
    for compacted in (False, True):
        if compacted:  # both stores now answer from Parquet batches and their stored rollups
            assert LocalStore(home).compact().events == len(data)
            capsys.readouterr()
            assert main(["db", "rollup", "--json", "--store", pg.admin]) == 0
            rolled = json.loads(capsys.readouterr().out)
            assert rolled["events"] == len(data) and len(rolled["batches"]) >= 2, rolled  # one per day at most
            import psycopg

            from mcplens.store.postgres.schema import SCHEMA

            with psycopg.connect(pg.admin) as conn:  # the batches' columns, for the readers' views (files.py)
                kept = [r[0] for r in conn.execute(f"SELECT manifest FROM {SCHEMA}.batches").fetchall()]
            assert kept and all([c[0] for c in m["columns"]] == list(ev.COLUMNS) for m in kept)
        for argv in COMMANDS:
            local = cli(capsys, *argv, "--home", str(home))
            remote = cli(capsys, *argv, "--store", pg.reader)
            assert local, argv  # every command here has something to say
            close(local, remote, " ".join(argv) + (" (compacted)" if compacted else ""))
    insights = cli(capsys, "insights", "--json", "--store", pg.reader)
    detectors = {f["detector"] for f in insights}
    assert {"client_spike", "loop", "heavy_tail", "chain"} <= detectors, detectors


def _nearest_rank(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[max(1, math.ceil(q * len(s))) - 1]


def test_rollup_table_counts_exact_percentiles_within_stated_error(pg: Database, tmp_path: Path,
                                                                   data: list[dict[str, Any]]) -> None:
    load_both(pg, tmp_path / "local", data)
    assert main(["db", "rollup", "--store", pg.admin]) == 0  # whole hours from the stored rollups
    store = PostgresStore(pg.reader)
    store.exact_up_to = 0  # force the rollup path, as over millions of events
    t_lo, t_hi = workload.T0 + 7.3 * HOUR, workload.T0 + 30.6 * HOUR  # both ends mid-hour: raw edges + rollups
    for window in (None, TimeWindow(t_lo, t_hi), TimeWindow(t_lo + 60, t_lo + 900)):
        rows = store.tool_table(window)
        exact = {(r["server"], r["method"], r["target"]): r for r in PostgresStore.tool_table(
            _exact(pg), window)}
        assert {(r["server"], r["method"], r["target"]) for r in rows} == set(exact)
        for r in rows:
            key = (r["server"], r["method"], r["target"])
            e = exact[key]
            for f in ("calls", "errors", "statuses", "payload_max_bytes"):
                assert r[f] == e[f], (window, key, f)
            # the rollups sum durations in whole microseconds: the mean is within half of one
            assert math.isclose(r["mean_ms"], e["mean_ms"], rel_tol=1e-9, abs_tol=5e-4)
            calls = [x for x in data if x.get(ev.METHOD) == key[1] and x.get(ev.TARGET) == key[2]
                     and x.get(ev.SERVER_NAME) == key[0] and x[ev.EVENT_KIND] == "request"
                     and (window is None or window.since <= x[ev.TIME] < window.until)]
            for field, col, scale, qs in (("p{}_ms", ev.DURATION, 1000, (50, 95, 99)),
                                          ("payload_p{}_bytes", ev.RESPONSE_SIZE, 1, (50, 95)),
                                          ("tokens_p{}", ev.RESPONSE_TOKENS, 1, (50, 95))):
                for q in qs:
                    want = _nearest_rank([x[col] * scale for x in calls], q / 100)
                    got = r[field.format(q)]
                    assert abs(got - want) <= histogram.REL_ERROR * want + (1e-3 if col == ev.DURATION else 1), (
                        window, key, field.format(q), got, want)


def _exact(pg: Database) -> PostgresStore:
    s = PostgresStore(pg.reader)
    s.exact_up_to = 10**12
    return s
