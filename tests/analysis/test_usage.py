"""Usage detectors on hand-made rollup tables in a real DuckDB (no store): each way a detector can
compute its answer gives the same findings."""

from __future__ import annotations

import itertools
import random
from types import SimpleNamespace
from typing import Any

import duckdb
import pytest

from mcplens.analysis import usage
from mcplens.analysis.core import Thresholds
from mcplens.analysis.findings import Finding
from mcplens.store.local.files import Reader


def analysis(con: Any, **thresholds: Any) -> SimpleNamespace:
    """What a detector uses of an Analysis: ``run``, thresholds, ``add`` and ``scoped``."""
    found: list[Finding] = []

    def add(detector: str, severity: str, subject: str, title: str, action: str, **evidence: Any) -> None:
        found.append(Finding(detector, severity, subject, title, evidence, action))

    return SimpleNamespace(run=Reader(con), th=Thresholds(**thresholds), findings=found, add=add,
                           scoped=lambda server, subject: f"{server}/{subject}")


def errmin(rows: list[tuple[str | None, str | None, int]]) -> Any:
    con = duckdb.connect()
    con.execute("CREATE TABLE ru_errmin (server VARCHAR, tool VARCHAR, minute BIGINT, errors BIGINT)")
    columns = [list(c) for c in zip(*rows, strict=True)] or [[], [], []]
    con.execute("INSERT INTO ru_errmin SELECT unnest(?::VARCHAR[]), unnest(?::VARCHAR[]), unnest(?::BIGINT[]), 1",
                columns)
    return con


def fail_together(con: Any, monkeypatch: pytest.MonkeyPatch, *, bitmaps: bool, **th: Any) -> list[Finding]:
    monkeypatch.setattr(usage, "FAIL_TOGETHER_BITMAP_BYTES", usage.FAIL_TOGETHER_BITMAP_BYTES if bitmaps else -1)
    a = analysis(con, **th)
    usage.fail_together(a)  # type: ignore[arg-type]
    return a.findings


def test_tools_failing_in_the_same_minutes_are_paired_with_their_overlap(monkeypatch: pytest.MonkeyPatch) -> None:
    # db_read and db_write fail in minutes 100-104, db_write also in 105 and 106; cache alone in 200-204
    rows = [("s", t, m) for m in range(29_000_100, 29_000_105) for t in ("db_read", "db_write")]
    rows += [("s", "db_write", 29_000_105), ("s", "db_write", 29_000_106)]
    rows += [("s", "cache", m) for m in range(29_000_200, 29_000_205)]
    for bitmaps in (True, False):
        (f,) = fail_together(errmin(rows), monkeypatch, bitmaps=bitmaps)
        assert f.subject == "s/db_read + db_write"
        assert f.evidence["minutes_both_failed"] == 5 and f.evidence["jaccard"] == round(5 / 7, 2)
        assert f.evidence["minutes_failed"] == {"db_read": 5, "db_write": 7}


def test_minute_bitmaps_find_what_joining_the_minutes_finds(monkeypatch: pytest.MonkeyPatch) -> None:
    """Random failures of many tools on several servers (one unnamed), a week apart at the ends: the
    bitmaps and the join give the same pairs, counts and order, over thresholds that keep few or many."""
    rng = random.Random(11)
    servers = ["alpha", "beta", None]
    tools = [f"t{i:02d}" for i in range(14)]
    rows = []
    for server, tool in itertools.product(servers, tools):
        rate = rng.choice([0.02, 0.2, 0.6])
        base = 29_000_000 + rng.randrange(3)
        rows += [(server, tool, base + m) for m in range(0, 10_080, rng.choice([1, 3, 7])) if rng.random() < rate]
    # and tools behind one dependency: the same minutes, each missing some
    shared = [29_000_000 + m for m in range(0, 10_080, 5) if rng.random() < 0.3]
    for server, tool in (("beta", "dep_a"), ("beta", "dep_b"), ("beta", "dep_c"), (None, "dep_a"), (None, "dep_d")):
        rows += [(server, tool, m) for m in shared if rng.random() < 0.8]
    con = errmin(rows)
    for th in ({}, {"fail_together_min_jaccard": 0.05, "fail_together_min_buckets": 1},
               {"fail_together_min_jaccard": 0.0, "fail_together_min_buckets": 50}):
        want = fail_together(con, monkeypatch, bitmaps=False, **th)
        got = fail_together(con, monkeypatch, bitmaps=True, **th)
        assert got == want
        assert len(want) == (4 if not th else 10), th  # the dependency's pairs only; else LIMIT 10


def test_no_failures_no_pairs(monkeypatch: pytest.MonkeyPatch) -> None:
    assert fail_together(errmin([]), monkeypatch, bitmaps=True) == []
    assert fail_together(errmin([("s", "only", 5)]), monkeypatch, bitmaps=True) == []
