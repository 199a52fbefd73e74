"""AnalysisSource.each: independent statements two at once on forks of a reader's connection, with
the results, errors and scratch tables of one at a time."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import duckdb
import pytest

from mcplens.store import source as source_module
from mcplens.store.local import files
from mcplens.store.local.files import Reader
from mcplens.store.local.reader import LocalStore
from mcplens.store.source import AnalysisSource, DuckDBSource
from tests.store.factory import request, write


def forking_source(streams: int = 2) -> tuple[DuckDBSource, list[Reader]]:
    """A source over a private connection whose reader can fork; the forks it made, to check on."""
    made: list[Reader] = []

    class Counted(Reader):
        def fork(self) -> Reader | None:
            other = super().fork()
            if other is not None:
                made.append(other)
            return other

    return DuckDBSource(Counted(duckdb.connect(), streams=streams), None, None), made


def test_tasks_run_at_once_on_forks_and_results_come_in_their_order() -> None:
    src, forks = forking_source()
    src("CREATE OR REPLACE TEMP TABLE base AS SELECT range AS i FROM range(1000)")
    both = threading.Barrier(2, timeout=30)  # each task waits for another to run at the same time

    def task(k: int) -> Any:
        def run(s: AnalysisSource) -> Any:
            s(f"CREATE OR REPLACE TEMP TABLE part{k} AS SELECT sum(i) + {k} AS v FROM base")
            both.wait()
            return threading.current_thread().name, s(f"SELECT v FROM part{k}")[0]["v"]
        return run

    out = src.each([task(k) for k in range(4)])
    assert [v for _, v in out] == [499500 + k for k in range(4)]
    assert len({name for name, _ in out}) == 2  # two threads, the caller's among them
    assert len(forks) == 1 and all(f.con is not src._run.con for f in forks)
    # what the forks made is there for the source (it was a TEMP table of a private connection)
    assert src("SELECT sum(v) AS s FROM (SELECT v FROM part0 UNION ALL SELECT v FROM part3)")[0]["s"] == 999003
    assert _closed(forks[0])  # the fork was closed after


def test_every_task_runs_and_the_first_error_in_order_is_raised() -> None:
    src, forks = forking_source()
    ran: list[int] = []
    lock = threading.Lock()

    def task(k: int) -> Any:
        def run(s: AnalysisSource) -> int:
            with lock:
                ran.append(k)
            if k in (1, 3):
                s(f"SELECT * FROM no_such_table_{k}")
            return k
        return run

    with pytest.raises(duckdb.CatalogException, match="no_such_table_1"):
        src.each([task(k) for k in range(5)])
    assert sorted(ran) == [0, 1, 2, 3, 4]
    assert forks and all(_closed(f) for f in forks)


def test_a_source_that_cannot_fork_runs_every_task_itself_with_temp_tables() -> None:
    src, forks = forking_source(streams=1)
    out = src.each([lambda s, k=k: (threading.current_thread().name, s(f"SELECT {k} AS k")[0]["k"])
                    for k in range(3)])
    assert out == [(threading.current_thread().name, k) for k in range(3)] and not forks
    src("CREATE OR REPLACE TEMP TABLE t AS SELECT 1 AS x")
    assert src("SELECT count(*) AS n FROM duckdb_tables() WHERE table_name = 't' AND temporary")[0]["n"] == 1


def test_at_most_parallel_sources_and_one_per_task() -> None:
    src, forks = forking_source()
    src.each([lambda s: 1])
    assert forks == []  # one task: nothing to run beside it
    src.each([lambda s: 1] * 7)
    assert len(forks) == source_module.PARALLEL - 1


def test_a_store_reader_forks_only_with_two_cores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, [request(1_800_000_000.0 + i) for i in range(5)])
    store = LocalStore(tmp_path)
    for cores, streams in ((1, 1), (2, 2), (8, 2)):
        monkeypatch.setattr(files, "cores", lambda cores=cores: cores)
        with store.reader() as run:
            assert run.streams == streams
            fork = run.fork()
            assert (fork is None) == (streams == 1)
            if fork is not None:  # the store's views are the fork's too
                assert fork("SELECT count(*) AS n FROM events")[0]["n"] == 5
                fork.close()


def _closed(r: Reader) -> bool:
    try:
        r("SELECT 1")
    except duckdb.ConnectionException:
        return True
    return False


def test_ctrl_c_in_the_callers_task_stops_the_forks_statement_and_the_tasks_not_begun() -> None:
    """A KeyboardInterrupt is not a task's error to collect: it leaves at once, interrupting the
    statement a fork runs (one that would take minutes) and starting no other task."""
    src, _ = forking_source()
    running = threading.Event()
    ran: list[str] = []

    def task(s: AnalysisSource) -> None:
        ran.append(threading.current_thread().name)
        if threading.current_thread() is threading.main_thread():
            assert running.wait(30)
            raise KeyboardInterrupt
        running.set()
        s("SELECT count(*) FROM range(100000000000) t(i) WHERE i % 7 = 3")  # minutes on one thread

    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        src.each([task] * 6)
    assert time.monotonic() - t0 < 20  # not the minutes the fork's statement needs
    assert len(ran) == 2  # the caller's task and the fork's: the other four never began
