"""The usage rules' counts against the same counts made plainly: the spike rules' per window (made in
one statement for every window) against plain Python over random calls per unit, and tools that fail
together from merged or split minutes."""

from __future__ import annotations

import math
import random
from types import SimpleNamespace
from typing import Any

import pytest

from mcplens.analysis.usage import _window_counts
from mcplens.store import engine


def _expected(rows: list[tuple[Any, ...]], windows: list[int], unit: int, lead: int, base_units: int,
              day_units: int, min_calls: int) -> list[dict[str, Any]]:
    out = []
    keys = sorted({(r[0], r[1]) for r in rows}, key=lambda k: (k[0] is None, k[0] or "", k[1]))
    for w in windows:
        k = w // unit
        need = max(5, math.ceil(min_calls * math.sqrt(w / 3600)))
        for server, who in keys:
            mine = [r for r in rows if (r[0], r[1]) == (server, who) and r[2] < lead + base_units]
            recent = [r for r in mine if r[2] < k]
            base = [r for r in mine if r[2] >= lead]
            if sum(r[3] for r in recent) < need:
                continue
            wins: dict[int, int] = {}
            for r in base:
                wins[(r[2] - lead) // k] = wins.get((r[2] - lead) // k, 0) + r[3]
            names = [r[4] for r in recent + base if r[4] is not None]
            out.append({
                "window": w, "server": server, "who": who, "client_name": max(names) if names else None,
                "base_calls": sum(r[3] for r in base), "recent_calls": sum(r[3] for r in recent),
                "busiest": max(wins.values(), default=0),
                "same_window": sum(r[3] for r in base if r[2] >= day_units and r[2] % day_units < k),
                "first_seen": min(r[5] for r in recent + base),
            })
    return out


@pytest.mark.parametrize("seed", range(6))
def test_every_windows_counts_in_one_statement(seed: int) -> None:
    rng = random.Random(seed)
    split = random.Random(-seed)  # apart, so the calls drawn stay those of the seed
    windows = sorted(rng.sample([300, 600, 900, 1800, 3600, 7200], rng.randint(1, 3)))
    unit = math.gcd(*windows)
    lead = windows[-1] // unit
    day_units = 86400 // unit
    base_units = rng.randint(1, 3) * day_units + rng.randint(0, day_units)
    rows = []
    for server in (None, "alpha", "beta")[: rng.randint(1, 3)]:
        for i, who in enumerate(rng.sample(["a", "b", "c", "d", "e"], rng.randint(1, 5))):
            busy = i == 0 or rng.random() < 0.5  # busy lately: enough recent calls for some window
            for ago in range(lead + base_units + rng.randint(0, 20)):  # some beyond the baseline: left out
                recent = ago < lead
                if (recent and busy) or rng.random() < 0.05:
                    n = rng.randint(20, 60) if recent and busy else rng.randint(1, 9)
                    # a unit may come in several rows (rollup buckets not grouped again): they add up
                    name, first = rng.choice([None, "cli", "ide"]), 1e9 - ago * unit + rng.random()
                    for part in [n] if n < 2 or split.random() < 0.7 else [n // 2, n - n // 2]:
                        rows.append((server, who, ago, part, name, first + split.random()))
    con = engine.duckdb().connect()
    con.execute("CREATE TABLE units (server VARCHAR, who VARCHAR, ago BIGINT, n BIGINT, client_name VARCHAR, "
                "first DOUBLE)")
    con.executemany("INSERT INTO units VALUES (?, ?, ?, ?, ?, ?)", rows)

    def run(sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
        cur = con.execute(sql, params or [])
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]

    min_calls = rng.choice([5, 30, 50])
    got = _window_counts(SimpleNamespace(run=run), "units", windows, unit, lead, base_units, day_units, min_calls)
    want = _expected(rows, windows, unit, lead, base_units, day_units, min_calls)
    assert want, "the calls must make some rows (else the test compares nothing)"
    assert [{**r, "first_seen": pytest.approx(r["first_seen"])} for r in want] == got


def _fail_together_findings(rows: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    from mcplens.analysis.core import Thresholds
    from mcplens.analysis.usage import fail_together

    con = engine.duckdb().connect()
    con.execute("CREATE TABLE ru_errmin (server VARCHAR, tool VARCHAR, minute BIGINT, errors BIGINT)")
    con.executemany("INSERT INTO ru_errmin VALUES (?, ?, ?, ?)", rows)

    def run(sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
        cur = con.execute(sql, params or [])
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]

    found: list[dict[str, Any]] = []
    a = SimpleNamespace(run=run, th=Thresholds(), scoped=lambda server, subject: subject,
                        add=lambda *args, **evidence: found.append({"args": args, **evidence}))
    fail_together(a)
    return found


def test_tools_that_fail_together_are_found_alike_from_merged_or_split_minutes() -> None:
    """The local store hands the rule its minutes unmerged (a minute's errors may lie in a stored part
    and in a window's edge): the same findings as from one row per minute."""
    rng = random.Random(3)
    merged = []
    for server in (None, "alpha"):
        for minute in range(29_000_000, 29_000_000 + 600):
            shared = rng.random() < 0.3  # db and cache fail in the same minutes: a shared dependency
            for tool, p in (("db", 0.9 if shared else 0.02), ("cache", 0.85 if shared else 0.02), ("mail", 0.1)):
                if rng.random() < p:
                    merged.append((server, tool, minute, rng.randint(1, 9)))
    split = []
    for server, tool, minute, errors in merged:
        if errors > 1 and rng.random() < 0.5:  # in two parts
            split += [(server, tool, minute, 1), (server, tool, minute, errors - 1)]
        else:
            split.append((server, tool, minute, errors))
    want = _fail_together_findings(merged)
    assert sorted(str(f["server"]) for f in want) == ["None", "alpha"]
    assert all(set(f["minutes_failed"]) == {"db", "cache"} for f in want)
    assert _fail_together_findings(split) == want
