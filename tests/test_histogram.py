"""The shared histogram: Python and DuckDB put every value in the same bucket, and quantiles read back
within the stated error."""

from __future__ import annotations

import math
import random

import pytest

from mcplens import histogram as h


def test_index_and_bounds_agree() -> None:
    rng = random.Random(7)
    values = [rng.lognormvariate(5, 3) for _ in range(5000)] + [2.0 ** k for k in range(40)] + [1.0, 0.5, 0.0]
    for v in values:
        i = h.index(v)
        lo, hi = h.bounds(i)
        assert lo <= v < hi * (1 + 1e-12), (v, i, lo, hi)
        if v >= 1:
            assert abs(h.value(i) - v) / v <= h.REL_ERROR + 1e-12
    assert h.index(None) is None
    assert h.index(float("nan")) is None


def test_quantile_within_stated_error() -> None:
    rng = random.Random(11)
    data = sorted(rng.lognormvariate(8, 1.5) for _ in range(20000))
    counts: dict[int, int] = {}
    for v in data:
        i = h.index(v)
        counts[i] = counts.get(i, 0) + 1
    for q in (0.5, 0.9, 0.95, 0.99, 1.0):
        exact = data[max(1, math.ceil(q * len(data))) - 1]
        got = h.quantile(counts, q)
        assert got is not None
        assert abs(got - exact) / exact <= h.REL_ERROR + 1e-9, (q, got, exact)
    assert h.quantile({}, 0.5) is None
    with pytest.raises(ValueError):
        h.quantile(counts, 1.5)


def test_merge_is_exact() -> None:
    a = {1: 2, 5: 3}
    b = {5: 1, 9: 4}
    assert h.merge([a, b]) == {1: 2, 5: 4, 9: 4}


def test_duckdb_index_sql_matches_python() -> None:
    duckdb = pytest.importorskip("duckdb")
    rng = random.Random(3)
    values = [rng.lognormvariate(4, 4) for _ in range(3000)] + [2.0 ** k for k in range(1, 45)] + [0.2, 1.0]
    con = duckdb.connect()
    con.execute("CREATE TABLE v (x DOUBLE)")
    con.executemany("INSERT INTO v VALUES (?)", [[x] for x in values] + [[None]])
    rows = con.execute(f"SELECT x, {h.index_sql('x')} FROM v").fetchall()
    assert len(rows) == len(values) + 1
    for x, i in rows:
        assert i == h.index(x), (x, i, h.index(x))
