"""Batches' recorded columns: views over batches of one schema bind from one footer, and batches of
other schemas (an older mcplens's) still read, each column NULL where a batch lacks it."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from mcplens import event as ev
from mcplens.store.local import files
from mcplens.store.local.files import SharedDatabase, parquet_columns
from mcplens.store.local.reader import LocalStore
from tests.store.factory import request, write

T0 = 1_800_000_000.0


@pytest.fixture(autouse=True)
def _own_database(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(files, "SHARED", SharedDatabase())
    monkeypatch.setattr("mcplens.store.local.reader.SHARED", files.SHARED)


def _manifests(home: Path) -> list[Path]:
    return sorted((home / "events" / "parquet").glob("*.manifest.json"))


def _compacted(home: Path, store: LocalStore, events: list[dict], instance: str) -> Path:
    """``events`` written and compacted into a batch of their own; its manifest."""
    before = set(_manifests(home))
    write(home, events, instance=instance)
    assert store.compact().events == len(events)
    (made,) = set(_manifests(home)) - before
    return made


def test_compaction_records_each_batch_schema(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    manifest = _compacted(tmp_path, store, [request(T0 + i) for i in range(20)], "a1")
    data = json.loads(manifest.read_text())
    con = duckdb.connect()
    described = [[r[0], r[1]] for r in con.execute(
        f"DESCRIBE SELECT * FROM read_parquet('{manifest.parent / data['parquet']}')").fetchall()]
    assert data["columns"] == described
    assert [c[0] for c in described] == list(ev.COLUMNS)  # every event column, in the writer's order
    (snap_schema,) = store.snapshot().schemas.values()
    assert [list(c) for c in snap_schema] == described


def _as_older_mcplens(manifest: Path, drop: str, *, record: bool) -> None:
    """Rewrite a batch as an older mcplens would have: without the column ``drop``; its manifest
    recording the columns left (``record``) or, older still, nothing about them."""
    data = json.loads(manifest.read_text())
    parquet = manifest.parent / data["parquet"]
    con = duckdb.connect()
    tmp = parquet.with_name("rewrite.parquet")
    con.execute(f"COPY (SELECT * EXCLUDE (\"{drop}\") FROM read_parquet('{parquet}')) TO '{tmp}' (FORMAT parquet)")
    tmp.replace(parquet)
    if record:
        data["columns"] = parquet_columns(con, parquet)
        assert drop not in [c[0] for c in data["columns"]]
    else:
        data.pop("columns")
    manifest.write_text(json.dumps(data))


@pytest.mark.parametrize("order", ["new_first", "old_first"])
def test_batches_of_other_schemas_read_beside_the_new(tmp_path: Path, order: str) -> None:
    """One ``read_parquet`` without ``union_by_name`` over all of them would fail (a column the first
    file has, damaged from another) or drop the columns the first file lacks: each schema is a group."""
    store = LocalStore(tmp_path)
    new = [request(T0 + 100 + i, size=1000 + i) for i in range(10)]
    recorded_old = [request(T0 + 200 + i, size=2000 + i) for i in range(7)]
    unrecorded_old = [request(T0 + 300 + i, size=3000 + i) for i in range(5)]
    groups = [(new, None, True), (recorded_old, ev.RESPONSE_TOKENS, True), (unrecorded_old, ev.RESPONSE_TOKENS, False)]
    if order == "old_first":
        groups.reverse()
    for i, (events, drop, record) in enumerate(groups):
        manifest = _compacted(tmp_path, store, events, f"inst{i}")
        if drop is not None:
            _as_older_mcplens(manifest, drop, record=record)
    store = LocalStore(tmp_path)
    assert len(store.snapshot().schemas) == 2  # the unrecorded batch is read by name, as before
    rows = store.query("SELECT event_id, response_size, response_tokens FROM events")
    by_id = {r["event_id"]: r for r in rows}
    assert len(rows) == len(by_id) == 22
    for e in new:
        assert by_id[e[ev.EVENT_ID]]["response_tokens"] == e[ev.RESPONSE_TOKENS]
    for e in recorded_old + unrecorded_old:
        r = by_id[e[ev.EVENT_ID]]
        assert r["response_tokens"] is None and r["response_size"] == e[ev.RESPONSE_SIZE]


def test_a_view_over_one_schemas_batches_binds_without_reading_the_others(tmp_path: Path) -> None:
    """The point of the record: with every batch's schema known, making the view opens the first file
    only, so a file that cannot be opened is not touched until a query scans it."""
    store = LocalStore(tmp_path)
    first = _compacted(tmp_path, store, [request(T0 + i) for i in range(5)], "a1")
    second = _compacted(tmp_path, store, [request(T0 + 50 + i) for i in range(5)], "a2")
    snap = store.snapshot()
    paths = [p.parent / json.loads(p.read_text())["parquet"] for p in (first, second)]
    assert sorted(snap.parquet) == sorted(paths)
    damaged = paths[1].with_name("damaged.parquet")
    damaged.write_bytes(b"not a Parquet file at all")
    con = duckdb.connect()
    schemas = {paths[0]: snap.schemas[paths[0]], damaged: snap.schemas[paths[1]]}
    con.execute(files.events_view_sql("v", [paths[0], damaged], [], schemas))  # made from the first file
    with pytest.raises(duckdb.Error, match="damaged"):  # the others opened when a query scans them
        con.execute("SELECT count(*) FROM v").fetchall()
    with pytest.raises(duckdb.Error, match="damaged"):  # unknown schemas: every footer read to make the view
        con.execute(files.events_view_sql("w", [paths[0], damaged], []))


def test_recent_requests_read_only_the_batches_that_hold_them(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    old = [request(T0 + i) for i in range(30)]
    mid = [request(T0 + 3600 + i * 10) for i in range(30)]
    new = [request(T0 + 7200 + i) for i in range(30)]
    manifests = [_compacted(tmp_path, store, evs, f"i{n}") for n, evs in enumerate((old, mid, new))]
    tail = [request(T0 + 7300 + i) for i in range(4)]
    write(tmp_path, tail, instance="tail")  # closed, not compacted: the tail
    batches = [m.parent / json.loads(m.read_text())["parquet"] for m in manifests]
    since = T0 + 3600 + 150  # within the middle batch
    with store.analysis_source(None) as source:
        relation = source.events_from(since)
        got = {r["event_id"] for r in source(f"SELECT event_id FROM {relation} WHERE time >= {since!r}")}
        views = " ".join(r["sql"] for r in source("SELECT sql FROM duckdb_views() WHERE view_name LIKE 'events_from%'"))
    assert got == {e[ev.EVENT_ID] for e in mid[15:] + new + tail}
    assert str(batches[0]) not in views and str(batches[1]) in views and str(batches[2]) in views


def test_a_re_roll_records_the_columns_of_an_older_batch(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    manifest = _compacted(tmp_path, store, [request(T0 + i) for i in range(5)], "a1")
    data = json.loads(manifest.read_text())
    recorded = data.pop("columns")
    data.pop("rollups")  # as an older mcplens left it: the next compaction rolls every batch up again
    manifest.write_text(json.dumps(data))
    assert not store.snapshot().schemas
    assert store.compact().rolled_up == 1
    assert json.loads(manifest.read_text())["columns"] == recorded
    assert len(LocalStore(tmp_path).snapshot().schemas) == 1


def test_the_typed_empty_row_joins_only_files_that_may_lack_a_column(tmp_path: Path) -> None:
    """Every query of the view binds it again: with every file typed as ``event.COLUMNS`` (a recorded
    schema that is, and the segments' reads) the view reads the files alone, with the same columns
    and types as with the empty row; a file that lacks one (or has no record) gets the empty row."""
    store = LocalStore(tmp_path)
    manifest = _compacted(tmp_path, store, [request(T0 + i) for i in range(5)], "a1")
    write(tmp_path, [request(T0 + 100 + i) for i in range(3)], instance="tail")
    snap = store.snapshot()
    (batch,) = snap.parquet
    con = duckdb.connect()

    def described(sql: str) -> list[tuple[str, str]]:
        con.execute(sql)
        return [(r[0], r[1]) for r in con.execute("DESCRIBE SELECT * FROM v").fetchall()]

    typed_row = " WHERE false"
    canonical = described(files.events_view_sql("v", [], []))  # the empty row alone
    for parquet, segments in (([batch], []), ([], snap.segments), ([batch], snap.segments)):
        sql = files.events_view_sql("v", parquet, segments, snap.schemas)
        assert typed_row not in sql
        assert described(sql) == canonical
        assert con.execute("SELECT count(*) FROM v").fetchone()[0] == 5 * len(parquet) + 3 * len(segments)
    assert typed_row in files.events_view_sql("v", [batch], [], {})  # no record: read by name
    assert typed_row in files.events_view_sql("v", [], [])  # no file: the empty row is the view
    _as_older_mcplens(manifest, ev.RESPONSE_TOKENS, record=True)
    older = LocalStore(tmp_path).snapshot().schemas
    sql = files.events_view_sql("v", [batch], [], older)
    assert typed_row in sql
    assert described(sql) == canonical
