"""``rollup.MERGE["loops"]`` against the rule it implements, on hand-made and random loop rows.

A loop key has one row per hour with new calls (its running count ``n`` at the hour's end) that
names the row it supersedes (``prev_hour``, ``prev_n``); a window keeps each key's rows that no
other row of the window supersedes. The rows here are made directly (no store), so the cases
cover what a window's edges produce: chains of rows, a superseded row outside the window, equal
counts in different hours, and several keys of one session.
"""

from __future__ import annotations

import random

import duckdb

from mcplens.store import rollup
from mcplens.store.local.files import Reader

COLS = ("loopkey", "server", "tool", "session", "hour", "n", "t0", "t1", "prev_hour", "prev_n")


def _merge(rows: list[tuple]) -> list[tuple]:
    con = duckdb.connect()
    con.execute("CREATE TABLE w (loopkey UBIGINT, server VARCHAR, tool VARCHAR, session VARCHAR, hour BIGINT, "
                "n BIGINT, t0 DOUBLE, t1 DOUBLE, prev_hour BIGINT, prev_n BIGINT)")
    if rows:
        con.executemany("INSERT INTO w VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    sql = rollup.MERGE["loops"].format(src="(SELECT * FROM w) WHERE true")
    return sorted(con.execute(sql).fetchall())


def _expected(rows: list[tuple]) -> list[tuple]:
    """The rule in Python: drop each row another row names as its previous one."""
    superseded = {(r[0], r[8], r[9]) for r in rows if r[9] is not None and r[9] >= 2}
    return sorted((r[0], r[1], r[2], r[3], r[5], r[6], r[7]) for r in rows
                  if (r[0], r[4], r[5]) not in superseded)


def test_chain_keeps_only_the_last_row() -> None:
    rows = [
        (1, "s", "a", "x", 10, 3, 0.0, 1.0, None, 1),  # first row of key 1 (prev_n 1: nothing superseded)
        (1, "s", "a", "x", 11, 5, 0.0, 2.0, 10, 3),  # supersedes the hour-10 row
        (1, "s", "a", "x", 13, 9, 0.0, 3.0, 11, 5),  # supersedes the hour-11 row: the key's final row
        (2, "s", "a", "y", 11, 4, 5.0, 6.0, 7, 2),  # its previous row (hour 7) lies outside the window
        (3, "s", "b", "y", 12, 2, 7.0, 8.0, None, 1),
        (4, None, "b", "z", 12, 6, 9.0, 9.5, 11, 6),  # same n as a row it does not supersede (other key)
        (5, None, "b", "z", 11, 6, 1.0, 1.5, None, 1),
    ]
    got = _merge(rows)
    assert got == _expected(rows)
    assert [(r[0], r[4]) for r in got] == [(1, 9), (2, 4), (3, 2), (4, 6), (5, 6)]


def test_random_rows_match_the_rule() -> None:
    rng = random.Random(7)
    for _ in range(30):
        rows = []
        for key in range(rng.randint(0, 40)):
            hour, n, prev = rng.randint(0, 5), 1, None
            server = rng.choice(["s1", "s2", None])
            for _ in range(rng.randint(1, 4)):
                add = rng.randint(1, 4)
                row_n = n + add
                if row_n >= 2:
                    rows.append((key, server, f"t{key % 3}", f"sess{key % 5}", hour, row_n, 0.0, float(hour),
                                 prev[0] if prev else None, prev[1] if prev else n))
                    prev = (hour, row_n)
                n = row_n
                hour += rng.randint(1, 3)
        window = [r for r in rows if rng.random() > 0.2]  # a window leaves some rows out
        assert _merge(window) == _expected(window)


def _levels(rows: list[tuple], *, examples: int, min_loop: int, first_hour: int | None) -> dict[str, list[tuple]]:
    """``ru_loops`` both ways over the same rows: from every key's rows, and from their per-hour counts."""
    con = duckdb.connect()
    con.execute("CREATE TABLE w (loopkey UBIGINT, server VARCHAR, tool VARCHAR, session VARCHAR, hour BIGINT, "
                "n BIGINT, t0 DOUBLE, t1 DOUBLE, prev_hour BIGINT, prev_n BIGINT)")
    if rows:
        con.executemany("INSERT INTO w VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    keep = f"(SELECT * FROM w) WHERE n >= {min_loop}"
    con.execute(f"CREATE TABLE c AS {rollup.loop_counts_sql(f'(SELECT * FROM {keep})', rollup.LOOP_EXAMPLES)}")

    got = {}
    con.execute(f"CREATE TEMP TABLE ru_loops AS {rollup.loop_levels_sql(keep, examples)}")
    got["rows"] = sorted(con.execute("SELECT * FROM ru_loops").fetchall(), key=str)
    rollup.loop_levels_from_counts(Reader(con), keep, "c", examples=examples, min_loop=min_loop, first_hour=first_hour)
    got["counts"] = sorted(con.execute("SELECT * FROM ru_loops").fetchall(), key=str)
    return got


def test_levels_from_counts_equal_levels_from_every_key() -> None:
    """Keys whose runs span hours (their rows superseded within the window, or by a row whose
    predecessor lies before it), sessions shared by many keys (so a level's examples name a
    superseded row), a partial first hour holding some keys' rows: the counts give what the keys do."""
    rng = random.Random(11)
    partial_first_hours = 0
    for case in range(40):
        rows = []
        w0 = 10  # the window's first whole hour; hour 9 is its partial first hour
        for key in range(rng.randint(0, 60)):
            hour, n, prev = rng.randint(6, 12), 0, None
            server, tool = rng.choice(["s1", "s2", None]), f"t{rng.randint(0, 2)}"
            session, t0 = f"sess{rng.randint(0, 6)}", float(hour * 3600 + rng.randint(0, 3599))
            for _ in range(rng.randint(1, 4)):
                n += rng.randint(1, 4)
                if n >= 2:
                    rows.append((key, server, tool, session, hour, n, t0, float(hour * 3600 + 3000),
                                 prev[0] if prev else None, prev[1] if prev else rng.randint(0, 1)))
                    prev = (hour, n)
                hour += rng.choice([0, 1, 1, 2]) if rows and rows[-1][0] == key else 1
        # the window: every row from w0 on, and the partial first hour's rows of some keys only (their
        # calls before the window's start are history); nothing earlier
        window = [r for r in rows if r[4] >= w0 or (r[4] == w0 - 1 and rng.random() < 0.5)]
        for examples, min_loop in ((1, 2), (2, 3), (5, 2)):
            got = _levels(window, examples=examples, min_loop=min_loop, first_hour=w0)
            assert got["counts"] == got["rows"], (case, examples, min_loop)
        partial_first_hours += any(r[4] == w0 - 1 for r in window)
    assert partial_first_hours > 10


def test_levels_from_counts_over_a_whole_store() -> None:
    """No first hour (a window with no start): every row a row names is in the set."""
    rows = [
        (1, "s", "a", "x", 10, 3, 0.0, 1.0, None, 1),
        (1, "s", "a", "x", 11, 5, 0.0, 2.0, 10, 3),  # supersedes the hour-10 row
        (1, "s", "a", "x", 11, 7, 0.0, 2.5, 11, 5),  # same hour, a later batch: supersedes that
        (2, "s", "a", "w", 11, 5, 4.0, 4.5, None, 1),
        (3, None, "b", "z", 12, 2, 9.0, 9.5, None, 0),
    ]
    got = _levels(rows, examples=5, min_loop=2, first_hour=None)
    assert got["counts"] == got["rows"]
    assert sorted(((r[0], r[1], r[2], r[3], r[4]) for r in got["rows"]), key=str) == sorted(
        [("s", "a", 7, 1, ["x"]), ("s", "a", 5, 1, ["w"]), (None, "b", 2, 1, ["z"])], key=str)
