"""The readers of one process share a DuckDB database (its cache of Parquet footers), each in a
schema of its own: two readers at once never meet each other's scratch tables, a reader leaves
nothing behind, and a failed one makes the next start on a fresh database."""

from __future__ import annotations

import threading
from pathlib import Path

import duckdb
import pytest

from mcplens.store.local import files
from mcplens.store.local.files import SharedDatabase
from mcplens.store.local.reader import LocalStore
from tests.store.factory import request, write


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LocalStore:
    monkeypatch.setattr(files, "SHARED", SharedDatabase())
    monkeypatch.setattr("mcplens.store.local.reader.SHARED", files.SHARED)
    write(tmp_path, [request(1_800_000_000.0 + i) for i in range(5)])
    return LocalStore(tmp_path)


def _schemas(db: duckdb.DuckDBPyConnection) -> list[str]:
    return [r[0] for r in db.execute("SELECT schema_name FROM duckdb_schemas() WHERE schema_name LIKE 'reader_%'")
            .fetchall()]


def test_two_readers_at_once_keep_their_scratch_tables_apart(store: LocalStore) -> None:
    both = threading.Barrier(2, timeout=30)
    seen: dict[int, list[int]] = {}

    def one(i: int) -> None:
        with store.reader() as run:
            run(f"CREATE OR REPLACE TEMP TABLE scratch AS SELECT {i} AS who")  # the same name in both
            fork = run.fork()
            assert fork is not None or files.cores() < 2
            both.wait()  # both tables exist now
            seen[i] = [r["who"] for r in (fork or run)("SELECT who FROM scratch")]
            if fork is not None:
                fork.close()

    threads = [threading.Thread(target=one, args=(i,)) for i in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == {1: [1], 2: [2]}
    db = files.SHARED._db
    assert db is not None and _schemas(db) == []  # each dropped its schema on closing


def test_readers_share_one_database_whose_cursors_cache_footers(store: LocalStore) -> None:
    with store.reader() as run:
        first = files.SHARED._db
        fork = run.fork()
        for r in (run, fork) if fork is not None else (run,):
            assert r("SELECT current_setting('parquet_metadata_cache') AS on")[0]["on"] is True
        if fork is not None:
            fork.close()
    with store.reader() as run:
        assert files.SHARED._db is first
        assert run("SELECT count(*) AS n FROM events")[0]["n"] == 5


def test_a_failed_reader_leaves_the_next_a_fresh_database(store: LocalStore) -> None:
    with store.reader() as run:
        run("SELECT 1")
    first = files.SHARED._db
    with pytest.raises(duckdb.Error), store.reader() as run:
        run("SELECT * FROM no_such_table")
    assert files.SHARED._db is None
    with store.reader() as run:
        assert run("SELECT count(*) AS n FROM events")[0]["n"] == 5
    assert files.SHARED._db is not None and files.SHARED._db is not first
    assert _schemas(first) == []  # the failed reader dropped its schema all the same


def test_a_database_serves_so_many_readers_then_a_fresh_one(store: LocalStore, monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    monkeypatch.setattr(SharedDatabase, "READERS", 3)
    dbs = []
    for _ in range(7):
        with store.reader() as run:
            run("SELECT 1")
            dbs.append(files.SHARED._db)
    assert [len({id(d) for d in dbs[i:i + 3]}) for i in (0, 3)] == [1, 1]
    assert len({id(d) for d in dbs}) == 3
