"""A window's insights from the stored hourly rollups equal the same window computed from the events.

The data is SYNTHETIC (tests/analysis/workload.py), written through the real segment writer and
compacted by the real compaction into two Parquet batches with a tail of segments left uncompacted.
Chains, a loop and a read-then-send are placed across a batch cut, across an hour boundary and
across the start of a window (which is in the middle of an hour), so that the partial hours, the
whole hours and the tail each hold part of them. The reference is the plain DuckDB source, which
computes every table from the window's events with the earlier events of its sessions as history.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mcplens import event as ev
from mcplens.analysis.core import Analysis, Options, Thresholds
from mcplens.analysis.run import analyze, insights
from mcplens.store import rollup
from mcplens.store.base import TimeWindow
from mcplens.store.local import source as local_source
from mcplens.store.local.reader import LocalStore
from mcplens.store.local.source import LocalSource
from mcplens.store.source import DuckDBSource
from tests.analysis import workload

DAY = workload.DAY
HOUR = rollup.HOUR_S
CUT1 = workload.T0 + 1.0 * DAY  # the first batch ends here (mid-hour)
CUT2 = workload.T0 + 2.0 * DAY  # the second here; the tail after it stays uncompacted
EDGE = CUT1 + 2 * HOUR + 1234.5  # a window start in the middle of an hour, after the first cut


def _placed() -> list[dict[str, Any]]:
    same = {"q": "the same question"}
    out = [workload.call(EDGE - 45 + 10 * i, "summarize", session="loop-edge", args=same, client="c-loop")
           for i in range(8)]  # 5 before the window's start, 3 after
    out += [workload.call(CUT1 - 40 + 10 * i, "summarize", session="loop-cut", args=same, client="c-loop")
            for i in range(7)]
    # a session whose history lies in both batches when the window's first hour and the tail are read
    again = {"q": "asked again and again"}
    out += [workload.call(t, "summarize", session="loop-long", args=again, client="c-long")
            for t in (CUT1 - 30, CUT1 - 20, CUT1 + 30, EDGE + 30, EDGE + 40, CUT2 + 30)]
    # a client with no session id (its key is client@instance): its history is found all the same
    for i in range(8):
        anon = workload.call(EDGE - 43 + 10 * i, "summarize", session="x", args={"q": "no session"}, client="c-anon")
        del anon[ev.SESSION_ID]
        anon.pop(ev.SESSION_SOURCE, None)
        out.append(anon)
    out += [  # read before the window starts, send inside it
        workload.call(EDGE - 100, "query_orders", session="leak-edge", client="c-leak"),
        workload.call(EDGE + 100, "post_comment", session="leak-edge", client="c-leak", request_size=40_000),
        workload.call(CUT2 - 60, "query_orders", session="leak-cut", client="c-leak"),
        workload.call(CUT2 + 60, "post_comment", session="leak-cut", client="c-leak", request_size=30_000),
    ]
    hour = (EDGE // HOUR + 3) * HOUR  # a whole hour's boundary inside the window
    for k in range(40):  # chains across the window's start, an hour boundary and both cuts
        for t0 in (EDGE, hour, CUT1, CUT2):
            out += [workload.call(t0 - 5 + k * 0.01, "translate", session=f"chain{k}@{t0}", client="c-chain"),
                    workload.call(t0 + 5 + k * 0.01, "create_ticket", session=f"chain{k}@{t0}", client="c-chain"),
                    workload.call(t0 + 7 + k * 0.01, "post_comment", session=f"chain{k}@{t0}", client="c-chain")]
    return out


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    evs = sorted([*workload.normal(20_000, days=3.0, seed=5), *_placed()], key=lambda e: e[ev.TIME])
    home = tmp_path_factory.mktemp("windows") / "home"
    for i, (lo, hi) in enumerate(((0.0, CUT1), (CUT1, CUT2), (CUT2, 1e12))):
        workload.write(home, [e for e in evs if lo <= e[ev.TIME] < hi], instance=f"writer{i}")
        if i < 2:
            LocalStore(home).compact()
    return home


WINDOWS = {
    "since, mid-hour": TimeWindow(EDGE, None),
    "both ends mid-hour, until in the tail": TimeWindow(EDGE - 0.4 * DAY, CUT2 + 5 * HOUR + 99.0),
    "no whole hour": TimeWindow(EDGE - 600.0, EDGE + 900.0),
    "whole hours only": TimeWindow((EDGE // HOUR + 1) * HOUR, (CUT2 // HOUR - 2) * HOUR),
    "until before the tail": TimeWindow(None, CUT1 + 3 * HOUR + 17.0),
    "mostly tail": TimeWindow(CUT2 + 100.0, None),
    # a whole UTC day inside, whole hours around it and partial hours at both ends (chains, perf: day rows)
    "whole days, both ends mid-hour": TimeWindow(workload.T0 + 3 * HOUR + 600.0, CUT2 + 5 * HOUR + 99.0),
}


def _run(store: LocalStore, window: TimeWindow | None, *, stored: bool, server: str | None = None
         ) -> tuple[list[dict[str, Any]], dict[str, list[tuple[str, ...]]]]:
    with store.reader() as run:
        source = (LocalSource if stored else DuckDBSource)(run, window, server)
        found = [f.to_dict() for f in analyze(source, Options())]
        a = Analysis(source, Options())
        assert a.from_rollups is stored
        tables = {t: sorted(tuple(map(str, r.values())) for r in source(f"SELECT * FROM ru_{t}"))
                  for t in rollup.WINDOWED if t != "chains"}
        # a chain is a list: compare it as text, with its counts
        tables["chains"] = sorted(tuple(map(str, r.values())) for r in source(
            "SELECT server, chain::VARCHAR AS c, occurrences, sessions FROM ru_chains"))
        tables["errmin"] = sorted(tuple(map(str, r.values())) for r in source(  # a minute may lie in two parts
            "SELECT server, tool, minute, sum(errors) AS errors FROM ru_errmin GROUP BY ALL"))
        tables["marks"] = sorted(tuple(map(str, r.values())) for r in source("SELECT event_id, time FROM marks"))
        return found, tables


@pytest.mark.parametrize("name", [*WINDOWS, "whole store"])
def test_a_window_from_rollups_equals_the_window_from_the_events(home: Path, name: str) -> None:
    store = LocalStore(home)
    window = WINDOWS.get(name)
    found, tables = _run(store, window, stored=True)
    want, want_tables = _run(store, window, stored=False)
    for t in want_tables:
        assert tables[t] == want_tables[t], (name, t)
    assert found == want
    assert found  # something to compare


def test_what_crosses_the_window_start_is_judged_with_its_history(home: Path) -> None:
    found, tables = _run(LocalStore(home), WINDOWS["since, mid-hour"], stored=True)
    loop = next(f for f in found if f["detector"] == "loop" and "loop-edge" in f["evidence"]["example_sessions"])
    assert loop["evidence"]["longest_run"] >= 8  # the running count, its calls before the start included
    loops = _loops(home)
    runs = [int(r[-1]) for r in loops if r[0].startswith("c-anon@")]
    assert runs and max(runs) == 8  # 5 calls before the start, 3 after, none with a session id
    assert [int(r[-1]) for r in loops if r[0] == "loop-long"] == [6]  # two calls in the first batch
    leak = next(f for f in found if f["detector"] == "exfiltration" and f["subject"].endswith("-> post_comment"))
    assert leak["evidence"]["max_outbound_request_bytes"] == 40_000  # the read came before the window
    chain = [r for r in tables["chains"] if r[1] == "[translate, create_ticket, post_comment]"]
    assert chain and int(chain[0][2]) >= 40 * 2  # the chains at the start and at the hour boundary


def _loops(home: Path) -> list[tuple[str, ...]]:
    """(session, longest run) of each looping session of the window "since, mid-hour", from the stored
    rollups: ``ru_loops`` counts keys per level, with every session when it keeps more examples than
    any level has sessions."""
    with LocalStore(home).reader() as run:
        source = LocalSource(run, WINDOWS["since, mid-hour"], None)
        Analysis(source, Options(Thresholds(examples=1000)))
        assert source("SELECT max(keys) AS k FROM ru_loops")[0]["k"] < 1000
        rows = source("SELECT s AS session, max(n) AS n FROM (SELECT unnest(ss) AS s, n FROM ru_loops) GROUP BY 1")
        return [(str(r["session"]), str(r["n"])) for r in rows]


@pytest.mark.parametrize(("shift", "name"), [((1, 0), "both ends mid-hour, until in the tail"),
                                             ((-1, 0), "both ends mid-hour, until in the tail"),
                                             ((0, 1), "until before the tail"),
                                             ((0, -1), "until before the tail")])
def test_an_hour_dropped_or_counted_twice_is_caught(home: Path, monkeypatch: pytest.MonkeyPatch,
                                                     shift: tuple[int, int], name: str) -> None:
    """The comparison above is sharp: misplace the stored hours by one and it fails."""
    real = local_source.in_hours

    def off(column: str, lo: int | None, hi: int | None) -> str:
        return real(column, None if lo is None else lo + shift[0], None if hi is None else hi + shift[1])

    monkeypatch.setattr(local_source, "in_hours", off)
    store = LocalStore(home)
    window = WINDOWS[name]
    _, tables = _run(store, window, stored=True)
    _, want = _run(store, window, stored=False)
    assert tables["chains"] != want["chains"] and tables["buckets"] != want["buckets"]


# a day more before the window (fewer days is still right: their hours are read instead; a day more after
# it would hold only the hours up to the tail here, which the window reads anyway)
@pytest.mark.parametrize("shift", [(-24, 0)])
def test_a_day_dropped_or_counted_twice_is_caught(home: Path, monkeypatch: pytest.MonkeyPatch,
                                                   shift: tuple[int, int]) -> None:
    """Chains and perf read day rows for a window's whole days: count a day outside it and it shows."""
    real = local_source.whole_days

    def off(lo: int | None, hi: int | None) -> tuple[int | None, int | None]:
        d0, d1 = real(lo, hi)
        return (None if d0 is None else d0 + shift[0]), (None if d1 is None else d1 + shift[1])

    monkeypatch.setattr(local_source, "whole_days", off)
    window = WINDOWS["whole days, both ends mid-hour"]
    _, tables = _run(LocalStore(home), window, stored=True)
    _, want = _run(LocalStore(home), window, stored=False)
    assert tables["chains"] != want["chains"] and tables["perf"] != want["perf"]


@pytest.mark.parametrize("name", [*WINDOWS, "whole store"])
def test_two_statements_at_once_give_what_one_at_a_time_gives(home: Path, name: str,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The edge regions, the rollup tables and the detectors run two at once on forks of the reader
    (on two cores or more): the same findings, in the same order, as one statement at a time."""
    from mcplens.store import source as source_module
    from mcplens.store.local import files

    store, window = LocalStore(home), WINDOWS.get(name)
    monkeypatch.setattr(files, "cores", lambda: 2)
    forks = []
    fork = files.Reader.fork
    monkeypatch.setattr(files.Reader, "fork", lambda self: forks.append(fork(self)) or forks[-1])
    at_once = [f.to_dict() for f in insights(store, since=None if window is None else window.since,
                                             until=None if window is None else window.until)]
    assert forks and all(f is not None for f in forks)
    monkeypatch.setattr(source_module, "PARALLEL", 1)
    forks.clear()
    one_by_one = [f.to_dict() for f in insights(store, since=None if window is None else window.since,
                                                until=None if window is None else window.until)]
    assert not forks
    assert at_once == one_by_one and at_once


def test_a_windows_start_looks_up_history_only_in_batches_from_before_it(home: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Only a batch with events from before a region's new events can hold their sessions' history: a
    window starting in the first batch reads the first batch's spans for its first hour, not every
    batch's (the equality tests above hold it to the same tables)."""
    from mcplens.store.local import files

    store = LocalStore(home)
    spans = {Path(m["files"]["spans"]).name: m["time"][0] for m in store.snapshot().rollups}
    assert len(spans) == 2
    window = WINDOWS["both ends mid-hour, until in the tail"]
    assert min(spans.values()) < window.since < max(spans.values())
    lookups: list[set[str]] = []
    call = files.Reader.__call__

    def recording(self: files.Reader, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
        if "min(first) AS t FROM read_parquet(" in sql:
            lookups.append({name for name in spans if name in sql})
        return call(self, sql, params)

    monkeypatch.setattr(files.Reader, "__call__", recording)
    with store.analysis_source(window) as source:
        Analysis(source, Options())
    first_batch = {n for n, t in spans.items() if t < window.since}
    assert sorted(lookups, key=len) == [first_batch, set(spans)]  # the first hour's, then the last hour's
