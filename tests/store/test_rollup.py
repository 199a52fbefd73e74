"""Rollups give the very findings a scan of the events gives, though sessions cross batches.

The data is SYNTHETIC (tests/analysis/workload.py), written through the real segment writer and
compacted by the real compaction in three parts: two Parquet batches and a tail of segments not
compacted yet. Normal sessions straddle both cuts; a loop, a read-then-send and a chain are placed
across them on purpose.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mcplens import event as ev
from mcplens.analysis.core import Analysis, Options
from mcplens.analysis.run import analyze, insights
from mcplens.classify import ToolClasses
from mcplens.store import rollup
from mcplens.store.base import TimeWindow
from mcplens.store.local.files import MANIFEST_SUFFIX
from mcplens.store.local.reader import LocalStore
from mcplens.store.local.source import LocalSource
from mcplens.store.source import DuckDBSource
from tests.analysis import workload

DAY = workload.DAY
CUT1 = workload.T0 + 1.0 * DAY
CUT2 = workload.T0 + 2.0 * DAY


def _placed() -> list[dict[str, Any]]:
    """What must be found although its events sit in different batches."""
    same = {"q": "the same question"}
    loop = [workload.call(CUT1 - 40 + 10 * i, "summarize", session="loopy", args=same, client="c-loop")
            for i in range(7)]  # 4 before the first cut, 3 after
    leak = [
        workload.call(CUT2 - 60, "query_orders", session="leaky", client="c-leak"),
        workload.call(CUT2 + 60, "post_comment", session="leaky", client="c-leak", request_size=40_000),
    ]
    chain = [
        workload.call(t, tool, session=f"chain{k}", client="c-chain")
        for k in range(30)
        for t, tool in ((CUT1 - 5 + k * 0.01, "translate"), (CUT1 + 5 + k * 0.01, "create_ticket"))
    ]
    return [*loop, *leak, *chain]


@pytest.fixture(scope="module")
def parts() -> list[list[dict[str, Any]]]:
    evs = sorted([*workload.normal(30_000, days=3.0, seed=11), *_placed()], key=lambda e: e[ev.TIME])
    return [
        [e for e in evs if e[ev.TIME] < CUT1],
        [e for e in evs if CUT1 <= e[ev.TIME] < CUT2],
        [e for e in evs if e[ev.TIME] >= CUT2],
    ]


@pytest.fixture
def home(tmp_path: Path, parts: list[list[dict[str, Any]]]) -> Path:
    home = tmp_path / "home"
    for i, part in enumerate(parts):
        workload.write(home, part, instance=f"writer{i}")  # one segment name each
        if i < 2:
            assert LocalStore(home).compact().events == len(part)
    return home


def _edit_manifests(store: LocalStore, edit: Callable[[dict[str, Any]], object]) -> None:
    for m in store.manifests():
        path = m.parquet.with_name(m.batch + MANIFEST_SUFFIX)
        data = json.loads(path.read_text())
        edit(data)
        path.write_text(json.dumps(data))


def _raw(store: LocalStore, window: TimeWindow | None = None, options: Options | None = None,
         server: str | None = None) -> list[dict[str, Any]]:
    """The same run over the events themselves: the plain DuckDB source, which computes every table."""
    with store.reader() as run:
        return [f.to_dict() for f in analyze(DuckDBSource(run, window, server), options)]


def _scan(store: LocalStore, options: Options | None = None) -> list[dict[str, Any]]:
    return _raw(store, None, options)


def _uses_rollups(store: LocalStore, options: Options | None = None) -> bool:
    with store.analysis_source() as source:
        return Analysis(source, options or Options()).from_rollups


def test_rollups_and_a_scan_give_identical_findings(home: Path) -> None:
    store = LocalStore(home)
    manifests = store.manifests()
    assert len(manifests) == 2 and all(m.rollups for m in manifests)
    assert all(p.exists() for m in manifests for p in m.rollup_files())
    assert _uses_rollups(store)
    rolled = [f.to_dict() for f in insights(store)]
    assert rolled == _scan(store)

    by = {f["detector"]: f for f in rolled}
    loop = next(f for f in rolled if f["detector"] == "loop")
    assert loop["evidence"]["longest_run"] == 7 and loop["evidence"]["example_sessions"] == ["loopy"]
    leak = next(f for f in rolled if f["detector"] == "exfiltration" and f["subject"] == "query_orders -> post_comment")
    assert leak["evidence"]["max_outbound_request_bytes"] == 40_000
    assert by["volume"]["evidence"]["calls"] == store.query(
        "SELECT count(*) AS n FROM events WHERE kind = 'request'")[0]["n"]


def _tables(store: LocalStore, *, stored: bool) -> dict[str, list[tuple[Any, ...]]]:
    with store.reader() as run:
        source = LocalSource(run, None, None) if stored else DuckDBSource(run, None, None)
        a = Analysis(source, Options())
        assert a.from_rollups is stored
        tables = {t: sorted(tuple(map(str, r.values())) for r in source(f"SELECT * FROM ru_{t}"))
                  for t in rollup.WINDOWED}
        # the parts' rows summed (a key's errors may lie in two parts)
        tables["errmin"] = sorted(tuple(map(str, r.values())) for r in source(
            "SELECT server, tool, minute, sum(errors) AS errors FROM ru_errmin GROUP BY ALL"))
        tables["bucket_errors"] = sorted(tuple(map(str, r.values())) for r in source(
            "SELECT server, method, tool, bucket, category, sum(errors) AS errors FROM ru_bucket_errors GROUP BY ALL"))
        return tables


def test_every_rollup_table_equals_the_one_computed_from_the_events(home: Path) -> None:
    store = LocalStore(home)
    stored, scanned = _tables(store, stored=True), _tables(store, stored=False)
    for t in [*rollup.WINDOWED, "bucket_errors"]:
        assert stored[t] == scanned[t], t
    assert stored["bucket_errors"], "the workload's failed calls have categories"
    chain = [r for r in stored["chains"] if r[1] == "['translate', 'create_ticket']"]
    assert len(chain) == 1 and int(chain[0][3]) >= 30  # the 30 sessions whose pair straddles the first cut


def test_a_store_never_compacted_gives_the_same(home: Path, tmp_path: Path, parts: list[list[dict[str, Any]]]) -> None:
    raw = tmp_path / "raw"
    for i, part in enumerate(parts):
        workload.write(raw, part, instance=f"writer{i}")
    assert not _uses_rollups(LocalStore(raw))
    assert [f.to_dict() for f in insights(LocalStore(raw))] == [f.to_dict() for f in insights(LocalStore(home))]


def test_batches_without_rollups_are_rolled_up_by_the_next_compaction(home: Path) -> None:
    store = LocalStore(home)
    before = [f.to_dict() for f in insights(store)]
    _edit_manifests(store, lambda data: data.pop("rollups"))  # as an older mcplens left them
    assert not _uses_rollups(store)
    assert [f.to_dict() for f in insights(store)] == before  # read from the events meanwhile
    result = store.compact()
    assert result.rolled_up == 2 and result.events > 0  # and the tail compacted behind them
    assert _uses_rollups(store)
    assert [f.to_dict() for f in insights(store)] == before


def test_rollups_hashed_otherwise_are_read_from_the_events_then_rolled_up_again(home: Path) -> None:
    """The stored keys (sessions, loop keys, chains) are DuckDB hashes a window's edges compute again:
    another DuckDB version that hashes alike keeps the rollups; one that hashes otherwise reads the
    events until the next compaction rolls every batch up again."""
    store = LocalStore(home)
    before = [f.to_dict() for f in insights(store)]
    assert all(m.rollups and isinstance(m.rollups.get("hash"), int) for m in store.manifests())

    def other_version(data: dict[str, Any]) -> None:
        data["rollups"]["duckdb"] = "0.0.1"

    _edit_manifests(store, other_version)
    assert _uses_rollups(store)  # hashes alike: asked once, answered the same

    def other_hash(data: dict[str, Any]) -> None:
        data["rollups"]["hash"] += 1

    _edit_manifests(store, other_hash)
    assert not _uses_rollups(store)
    assert [f.to_dict() for f in insights(store)] == before
    result = store.compact()
    assert result.rolled_up == 2
    assert _uses_rollups(store)
    assert [f.to_dict() for f in insights(store)] == before


def test_a_classification_the_rollups_did_not_assume_reads_the_events(home: Path) -> None:
    store = LocalStore(home)
    opts = Options(classes=ToolClasses(outbound=("summarize",)))
    assert not _uses_rollups(store, opts)
    found = [f.to_dict() for f in insights(store, opts)]
    assert any(f["detector"] == "exfiltration" and f["subject"].endswith("-> summarize") for f in found)
    assert found == _scan(store, opts)
    # a narrower one is answered from the rollups: pairs are filtered, none are missing
    narrow = Options(classes=ToolClasses(ignore=("post_comment",)))
    assert _uses_rollups(store, narrow)
    assert [f.to_dict() for f in insights(store, narrow)] == _scan(store, narrow)


def test_stray_rollup_files_of_an_interrupted_compaction_are_removed(home: Path) -> None:
    stray = home / "events" / "parquet" / "rollups" / "19700101T000000-1-deadbeef.loops.parquet"
    stray.write_bytes(b"PAR1")
    LocalStore(home).compact()
    assert not stray.exists()
    assert all(p.exists() for m in LocalStore(home).manifests() for p in m.rollup_files())


def _close(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> None:
    assert [(r["server"], r["method"], r["target"]) for r in a] == [(r["server"], r["method"], r["target"]) for r in b]
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys()
        for k in x:
            if k == "mean_ms":  # a sum of doubles, added in another order
                assert x[k] == pytest.approx(y[k], rel=1e-12)
            else:
                assert x[k] == y[k], (x["name"], k)


def test_the_per_tool_table_from_rollups_equals_the_scan(home: Path) -> None:
    from mcplens.store.base import TimeWindow

    store = LocalStore(home)
    everything = TimeWindow(0.0, 1e12)  # a window with open ends: whole buckets from the rollups too
    exact = store.tool_table()  # a few thousand calls: exact percentiles
    store.exact_up_to = 0  # the histograms, as over millions of calls
    rolled = store.tool_table()
    assert [r["calls"] for r in rolled] == [r["calls"] for r in exact]
    assert any(r["p95_ms"] != e["p95_ms"] for r, e in zip(rolled, exact, strict=True))
    _close(rolled, store.tool_table(everything))
    assert sum(r["calls"] for r in rolled) == store.query(
        "SELECT count(*) AS n FROM events WHERE kind = 'request'")[0]["n"]
    assert {r["name"] for r in rolled} >= set(workload.TOOLS)
    _close(store.tool_table(tool="s*", sort="p99"), store.tool_table(everything, tool="s*", sort="p99"))
    _close(store.tool_table(server="files"), store.tool_table(everything, server="files"))
    assert store.tool_table(server="nope") == []


def test_batches_are_rolled_up_in_commit_order_not_name_order(
    tmp_path: Path, parts: list[list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two compactions within one second get names that sort at random; history must be commit order."""
    from mcplens.store.local import reader as local

    home = tmp_path / "same-second"
    suffixes = iter([b"\xff" * 4, b"\x00" * 4])
    monkeypatch.setattr(local.time, "strftime", lambda *_: "20260101T000000")
    real = local.os.urandom
    monkeypatch.setattr(local.os, "urandom", lambda n: next(suffixes) if n == 4 else real(n))  # the batch name's
    for i, part in enumerate(parts[:2]):
        workload.write(home, part, instance=f"writer{i}")
        LocalStore(home).compact()
    monkeypatch.undo()
    store = LocalStore(home)
    names = [m.batch for m in store.manifests()]
    assert names[0].endswith("00000000")  # the second batch sorts first
    assert [f.to_dict() for f in insights(store)] == _scan(store)
    _edit_manifests(store, lambda data: data.pop("rollups"))  # and again when rolled up all at once
    assert store.compact().rolled_up == 2
    assert [f.to_dict() for f in insights(store)] == _scan(store)


def test_a_re_roll_writes_new_files_and_the_next_compaction_removes_the_old(home: Path) -> None:
    store = LocalStore(home)
    old = {p for m in store.manifests() for p in m.rollup_files()}
    _edit_manifests(store, lambda data: data["rollups"].update(version=0))  # as another version wrote them
    assert store.compact().rolled_up == 2
    new = {p for m in store.manifests() for p in m.rollup_files()}
    assert not old & new and all(p.exists() for p in old | new)  # a reader of the old manifest still finds its files
    store.compact()
    assert not any(p.exists() for p in old) and all(p.exists() for p in new)


def test_compute_reads_only_the_columns_it_names(home: Path) -> None:
    """A window's edge is copied with :data:`rollup.COMPUTE_COLUMNS` only: every table computed from
    that copy equals the one computed from the events with every column (a column it reads but does
    not name fails the query)."""
    store = LocalStore(home)
    with store.reader() as run:
        tools = [r["t"] for r in run("SELECT DISTINCT target AS t FROM events WHERE method = 'tools/call' "
                                     "AND target IS NOT NULL ORDER BY 1")]
        reads, sends = ToolClasses().split(tools)
        assert reads and sends
        cols = ", ".join(f'"{c}"' for c in rollup.COMPUTE_COLUMNS)
        run(f"CREATE TEMP TABLE narrow AS SELECT {cols} FROM events WHERE time >= {CUT1}")
        run(f"CREATE TEMP VIEW wide AS SELECT * FROM events WHERE time >= {CUT1}")
        run(f"CREATE TEMP VIEW hist AS SELECT * FROM events WHERE time < {CUT1}")
        got = {}
        for prefix, new in (("n_", "narrow"), ("w_", "wide")):
            rollup.compute(run, new, "hist", reads=reads, sends=sends, exfil_window=600.0, prefix=prefix,
                           tables=rollup.WINDOWED)
            got[prefix] = {t: sorted(tuple(map(str, r.values())) for r in run(f"SELECT * FROM {prefix}{t}"))
                           for t in rollup.WINDOWED}
    assert all(got["w_"][t] for t in ("chains", "loops", "exfil", "buckets", "errmin", "perf")), "a table with rows"
    assert got["n_"] == got["w_"]


def test_the_tables_of_the_new_events_alone_can_be_made_by_a_call_of_their_own(home: Path) -> None:
    """A window's edge makes the tables that need its sessions' history (:data:`rollup.FROM_CALLS`) in
    one call and the others in another, on whichever source is free: either order, the same tables as
    one call; the history-free call makes no ``calls`` of its own, nor drops the other's."""
    store = LocalStore(home)
    with store.reader() as run:
        tools = [r["t"] for r in run("SELECT DISTINCT target AS t FROM events WHERE method = 'tools/call' "
                                     "AND target IS NOT NULL ORDER BY 1")]
        reads, sends = ToolClasses().split(tools)
        run(f"CREATE TEMP TABLE new AS SELECT * FROM events WHERE time >= {CUT1}")
        run(f"CREATE TEMP VIEW hist AS SELECT * FROM events WHERE time < {CUT1}")
        with_calls = [t for t in rollup.WINDOWED if t in rollup.FROM_CALLS]
        alone = [t for t in rollup.WINDOWED if t not in rollup.FROM_CALLS]
        assert with_calls and alone
        kw = {"reads": reads, "sends": sends, "exfil_window": 600.0, "sort": False}

        def tables(prefix: str) -> dict[str, list[tuple[str, ...]]]:
            return {t: sorted(tuple(map(str, r.values())) for r in run(f"SELECT * FROM {prefix}{t}"))
                    for t in rollup.WINDOWED}

        def made(prefix: str) -> set[str]:
            return {r["n"] for r in run("SELECT table_name AS n FROM duckdb_tables() WHERE table_name LIKE ?",
                                        [prefix + "%"])}

        rollup.compute(run, "new", "hist", prefix="one_", tables=rollup.WINDOWED, **kw)
        said: list[str] = []

        def logged(sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
            said.append(sql)
            return run(sql, params)

        rollup.compute(logged, "new", None, prefix="a_", tables=alone, **kw)
        assert made("a_") == {f"a_{t}" for t in alone}
        # nothing of the other call's: it may be running its statements on those at the same time
        assert not [q for q in said if re.search(r"\ba_(calls|seq|new_calls|new_sessions)\b", q)]
        rollup.compute(run, "new", "hist", prefix="a_", tables=with_calls, **kw)
        rollup.compute(run, "new", "hist", prefix="b_", tables=with_calls, **kw)
        rollup.compute(run, "new", None, prefix="b_", tables=alone, **kw)
        one = tables("one_")
        assert all(one[t] for t in ("chains", "loops", "buckets", "perf")), "tables with rows"
        assert tables("a_") == one and tables("b_") == one


def test_the_marks_of_batches_that_agree_are_read_without_matching_by_name(home: Path) -> None:
    """Each batch records its marks file's columns; when every batch's agree, the analysis reads the
    marks files as one schema (no footer of each file read for every query). A batch without the
    record, or with other columns, brings back the read by name, with the same marks."""
    import duckdb

    store = LocalStore(home)
    metas = store.snapshot().rollups
    assert metas and len(metas) == 2
    for m in metas:
        described = duckdb.connect().execute(f"DESCRIBE SELECT * FROM read_parquet('{m['files']['marks']}')").fetchall()
        assert m["marks_columns"] == [[r[0], r[1]] for r in described]
    assert rollup.marks_columns(metas) == metas[0]["marks_columns"]

    def marks(s: LocalStore) -> tuple[str, list[tuple[Any, ...]]]:
        with s.analysis_source(None) as source:
            source.marks()
            (view,) = source("SELECT sql FROM duckdb_views() WHERE view_name = 'marks'")
            rows = sorted(tuple(map(str, r.values())) for r in source("SELECT * FROM marks"))
        return view["sql"], rows

    sql, agreed = marks(store)
    assert "union_by_name" not in sql and agreed
    first = store.manifests()[0]
    path = first.parquet.with_name(first.batch + MANIFEST_SUFFIX)
    original = path.read_text()
    for edit in (lambda r: r.pop("marks_columns"), lambda r: r["marks_columns"].append(["extra", "VARCHAR"])):
        data = json.loads(original)
        edit(data["rollups"])  # one batch only: an older mcplens's, or one whose marks have other columns
        path.write_text(json.dumps(data))
        sql, rows = marks(LocalStore(home))
        assert "union_by_name" in sql and rows == agreed


def test_a_data_directory_named_with_glob_characters_reads_its_rollups(home: Path, tmp_path: Path) -> None:
    """``*``, ``?`` and ``[...]`` in the data directory's name: ``read_parquet`` takes them as a pattern
    unless the file exists by that name (the batches' paths are escaped, the rollups' are not), so
    every read of rollups, marks, spans and the views' files finds its files: the same findings,
    report and sessions as from a plain name, from the rollups."""
    import shutil

    from mcplens import views

    odd = tmp_path / "we[ir]d*?home"
    shutil.copytree(home, odd)
    plain, strange = LocalStore(home), LocalStore(odd)
    assert _uses_rollups(strange)
    window = TimeWindow(CUT1 - 3600 * 5 - 17, None)
    assert [f.to_dict() for f in insights(strange, since=window.since)] == \
        [f.to_dict() for f in insights(plain, since=window.since)]
    assert [f.to_dict() for f in insights(strange)] == [f.to_dict() for f in insights(plain)]
    assert views.tools(strange, window) == views.tools(plain, window)
    assert views.sessions(strange, window) == views.sessions(plain, window)
