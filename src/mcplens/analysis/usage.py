"""Usage detectors: who calls what, and how: spikes of a client or a tool, chains, loops, tools that
fail together, tools listed but never called."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from mcplens.analysis.core import _SAME, _r, _t
from mcplens.analysis.findings import CRITICAL, INFO, WARNING
from mcplens.classify import DATA_ACCESS, HIGH, MEDIUM
from mcplens.store.rollup import BUCKET

if TYPE_CHECKING:
    from mcplens.analysis.core import Analysis


def client_spikes(a: Analysis) -> None:
    spikes(a, "client", a.th.client_spike_factor, a.th.client_spike_min_calls, "client_spike")


def tool_spikes(a: Analysis) -> None:
    # tools/call only: the tool's label is its name (cheaper than the view's CASE over every row)
    spikes(a, "coalesce(target, method)", a.th.tool_spike_factor, a.th.tool_spike_min_calls, "tool_spike")


def detect(a: Analysis) -> None:
    for d in DETECTORS:
        d(a)


def spikes(a: Analysis, column: str, factor: float, min_calls: int, detector: str) -> None:
    """A client's or a tool's calls over each of ``spike_windows`` (5, 15, 60 min) against the same
    window length in its own baseline on its own server: a burst of half an hour shows in the 15-min
    window although the hour around it looks ordinary. Reported once, over the longest window that
    fires (its rate is the most representative)."""
    th = a.th
    windows = sorted({int(w) * 60 for w in th.spike_windows if int(w) > 0}) or [3600]
    unit = math.gcd(*windows)
    day_units = max(1, round(86400 / unit))
    lead = windows[-1] // unit
    base_units = int(th.baseline // unit)
    b1 = a.now - windows[-1]  # the baseline ends where the longest window starts
    k1 = math.floor(b1 / unit)  # ... in whole units (of the epoch): the rollups' buckets add up to them
    k0 = k1 - base_units
    name = "max(client_name)" if column == "client" else "NULL::VARCHAR"
    if unit % BUCKET == 0 and a.bucket_size == BUCKET:
        # the buckets' rows as units, not grouped again: _window_counts sums whatever rows a unit has
        # (grouping ~50k rows that are one per unit already was ~10 ms of each spike rule)
        m = unit // int(BUCKET)
        base = (f"SELECT server, client AS who, floor(bucket / {m})::BIGINT AS u, n, client_name, first "
                f"FROM ru_clients"
                if column == "client" else
                f"SELECT server, tool AS who, floor(bucket / {m})::BIGINT AS u, served AS n, "
                f"NULL::VARCHAR AS client_name, first FROM ru_buckets WHERE method = 'tools/call' AND served > 0")
    else:
        base = (f"SELECT server, {column} AS who, floor(time / {float(unit)!r})::BIGINT AS u, count(*) AS n, "
                f"{name} AS client_name, min(time) AS first FROM req WHERE method = 'tools/call' "
                f"AND time >= {float(k0 * unit)!r} AND time < {float(k1 * unit)!r} GROUP BY ALL")
    # the recent windows exactly, from the events of the last one; the baseline per whole unit
    a.run(
        f"""CREATE OR REPLACE TEMP TABLE {detector}_units AS
            SELECT server, {column} AS who, least(floor((? - time) / ?)::BIGINT, {lead - 1}) AS ago, count(*) AS n,
                   {name} AS client_name, min(time) AS first
            FROM {a.req_from(b1)} WHERE time >= ? AND time < ? AND method = 'tools/call' GROUP BY ALL
            UNION ALL
            SELECT server, who, {lead} + ({k1} - 1 - u) AS ago, n, client_name, first
            FROM ({base}) WHERE u >= {k0} AND u < {k1}""",
        [a.now, float(unit), b1, a.now],
    )
    best: dict[tuple[Any, Any], dict[str, Any]] = {}
    for r in _window_counts(a, f"{detector}_units", windows, unit, lead, base_units, day_units, min_calls):
        w = r["window"]
        history = b1 - max(r["first_seen"], b1 - th.baseline)
        if history < th.min_history:
            continue
        n_windows = max(1, round(history / w))  # whole windows of history: events spread over them
        rate = r["base_calls"] / n_windows
        days = math.floor(history / 86400)
        if days >= 3:  # enough days to know this time of day: a busy morning is not a spike
            rate = max(rate, r["same_window"] / days)
        recent = r["recent_calls"]
        # both: far above its usual rate, and above its busiest window so far (sessions are bursty)
        if recent < factor * max(rate, 1 / n_windows) or recent <= th.spike_over_busiest * r["busiest"]:
            continue
        best[(r["server"], r["who"])] = dict(r, rate=rate, n_windows=n_windows, days=days)  # the longest that fires
    for (server, who), r in sorted(best.items(), key=lambda kv: (str(kv[0][0]), str(kv[0][1]))):
        w, rate = r["window"], r["rate"]
        per_hour = 3600 / w
        recent_rate = r["recent_calls"] * per_hour
        ratio = r["recent_calls"] / rate if rate else float("inf")
        r0 = a.now - w
        evidence = dict(
            server=server,
            window_minutes=w // 60,
            recent_calls=int(r["recent_calls"]),
            recent_calls_per_hour=_r(recent_rate),
            baseline_calls_per_hour=_r(rate * per_hour, 2),
            factor=_r(ratio) if ratio != float("inf") else None,
            baseline_hours=_r(r["n_windows"] * w / 3600),
            busiest_baseline_window=int(r["busiest"]),
            time_of_day_aware=r["days"] >= 3,
            window=[_t(r0), _t(a.now)],
        )
        span = f"over {w // 60} min" if w != 3600 else "in the last hour"
        # who: a client or a tool; the evidence names the other side (a client's tools, a tool's clients)
        me, other = ("client", "tool") if detector == "client_spike" else ("tool", "client")
        if me == "client":
            evidence["client_name"] = r["client_name"]
        evidence[f"{other}s"] = _top(a, other, f"{me} = ? AND {_SAME} AND time >= ?", [who, server, r0], r0)
        evidence["example_sessions"] = a.examples(
            f"SELECT session, count(*) n FROM {a.req_from(r0)} WHERE {me} = ? AND {_SAME} AND time >= ? "
            "GROUP BY 1 ORDER BY n DESC, session",
            [who, server, r0],
        )
        if me == "client":
            title = (f"client {r['client_name'] or who} jumped to {recent_rate:,.0f} calls/h {span} "
                     f"from {rate * per_hour:,.1f}/h")
            action = ("a runaway agent or abuse: look at its sessions; throttle it "
                      "(instrument(rate_limit=...)) if it keeps on")
        else:
            title = (f"tool {who} spiked to {recent_rate:,.0f} calls/h {span}, {ratio:,.1f}x its baseline "
                     f"{rate * per_hour:,.1f}/h")
            action = "check whether one agent is looping or harvesting data (see the example sessions)"
        a.add(detector, WARNING, a.scoped(server, who), title, action, **evidence)
        if me == "client":
            continue
        if a.classes.classify(who) == DATA_ACCESS:
            level, why = a.classes.sensitivity(who)
            a.add(
                "data_access_burst",
                {HIGH: CRITICAL, MEDIUM: WARNING}.get(level, INFO),
                a.scoped(server, who),
                f"burst in data-access tool {who}: {ratio:,.1f}x its usual rate {span} ({level} sensitivity)",
                "a burst of reads can be an exfiltration attempt driven by prompt injection: "
                "review what these sessions read and where it went",
                read_sensitivity=level,
                sensitivity_reason=why,
                **evidence,
            )


def _window_counts(a: Analysis, units: str, windows: list[int], unit: int, lead: int, base_units: int,
                   day_units: int, min_calls: int) -> list[dict[str, Any]]:
    """Per window (seconds, ascending) and (server, who) with at least the window's share of
    ``min_calls`` in it: its calls in the recent window and in the baseline, the busiest baseline
    window of its length, the baseline's calls at the same time of day, its first call.

    ``units``: calls per (server, who, ``ago``), ``ago`` counting units back from now, the recent
    ones below ``lead``, the baseline's from ``lead`` on; a unit may have several rows (summed). One
    statement for every window: the baseline (a week of units per client or tool) is aggregated once,
    not once per window, and only for those that have enough recent calls in some window."""
    needs = ", ".join(f"({w}, {w // unit}, {max(5, math.ceil(min_calls * math.sqrt(w / 3600)))})" for w in windows)
    same = ", ".join(f"sum(n) FILTER (WHERE ago >= {day_units} AND ago % {day_units} < {w // unit})" for w in windows)
    busiest = " UNION ALL ".join(
        f"SELECT {w} AS w, server, who, max(n) AS busiest FROM ("
        f"SELECT server, who, (ago - {lead}) // {w // unit} AS win, sum(n) AS n FROM b GROUP BY ALL) GROUP BY ALL"
        for w in windows)
    same_of = "CASE rec.w " + " ".join(f"WHEN {w} THEN base.same[{i + 1}]" for i, w in enumerate(windows)) + " END"
    return a.run(
        f"""WITH wk(w, k, need) AS (VALUES {needs}),
            u AS (SELECT * FROM {units} WHERE ago < {lead + base_units}),
            rec AS (SELECT wk.w, u.server, u.who, sum(u.n) AS recent_calls, max(u.client_name) AS client_name,
                           min(u.first) AS first
                    FROM u JOIN wk ON u.ago < wk.k GROUP BY ALL HAVING sum(u.n) >= any_value(wk.need)),
            b AS (SELECT * FROM u SEMI JOIN (SELECT DISTINCT server, who FROM rec) c
                  ON u.server IS NOT DISTINCT FROM c.server AND u.who = c.who WHERE u.ago >= {lead}),
            base AS (SELECT server, who, sum(n) AS calls, max(client_name) AS client_name, min(first) AS first,
                            [{same}] AS same
                     FROM b GROUP BY ALL),
            busy AS ({busiest})
        SELECT rec.w AS "window", rec.server, rec.who, greatest(rec.client_name, base.client_name) AS client_name,
               coalesce(base.calls, 0) AS base_calls, rec.recent_calls, coalesce(busy.busiest, 0) AS busiest,
               coalesce({same_of}, 0) AS same_window, least(rec.first, base.first) AS first_seen
        FROM rec
        LEFT JOIN base ON base.server IS NOT DISTINCT FROM rec.server AND base.who = rec.who
        LEFT JOIN busy ON busy.w = rec.w AND busy.server IS NOT DISTINCT FROM rec.server AND busy.who = rec.who
        ORDER BY rec.w, rec.server, rec.who"""
    )


def _top(a: Analysis, column: str, where: str, params: list[Any], since: float) -> dict[str, int]:
    """The five commonest values of ``column`` among the requests from ``since`` that meet ``where``."""
    rows = a.run(f"SELECT {column} AS k, count(*) AS n FROM {a.req_from(since)} WHERE {where} "
                 "GROUP BY 1 ORDER BY n DESC, k LIMIT 5", params)
    return {str(r["k"]): int(r["n"]) for r in rows}


def chains(a: Analysis) -> None:
    th = a.th
    rows = a.run(
        """
        WITH g AS (SELECT server, chain, chain[1:len(chain) - 1] AS prefix, occurrences, sessions
                   FROM ru_chains),  -- one row per (server, chain): merged by its hash (store/rollup.py)
             tot AS (SELECT server, coalesce(sum(with_2_calls), 0) AS n FROM ru_sessions GROUP BY server),
             c AS (SELECT *, occurrences / sum(occurrences) OVER (PARTITION BY server, prefix) AS confidence
                   FROM g)
        SELECT c.server, chain, occurrences, sessions, confidence, sessions / tot.n AS share, tot.n AS total
        FROM c JOIN tot ON c.server IS NOT DISTINCT FROM tot.server
        WHERE tot.n > 0 AND len(list_distinct(chain)) = len(chain) AND sessions >= ? AND sessions / tot.n >= ?
          AND confidence >= ?
        ORDER BY sessions DESC, len(chain) DESC, chain LIMIT 10""",
        [th.chain_min_sessions, th.chain_min_share, th.chain_min_confidence],
    )
    longer = [r for r in rows if len(r["chain"]) == 3]
    for r in rows:
        chain = r["chain"]
        # a pair that is only the start or end of a reported triple says nothing new
        if len(chain) == 2 and any(
            t["server"] == r["server"] and chain in (t["chain"][:2], t["chain"][1:])
            and t["sessions"] >= r["sessions"] * 0.9 for t in longer
        ):
            continue
        text = " -> ".join(chain)
        first, rest = chain[0], ", ".join(chain[1:])
        a.add(
            "chain",
            INFO,
            a.scoped(r["server"], text),
            f"agents chain {text} in {r['share']:.0%} of sessions",
            f"consider one tool doing {' + '.join(chain)}, returning {rest}'s data with {first}, or "
            f"caching {first}; if the order is forced by missing data, reorder the tools' outputs",
            server=r["server"],
            occurrences=int(r["occurrences"]),
            sessions=int(r["sessions"]),
            share=_r(r["share"], 3),
            confidence=_r(r["confidence"], 3),
            sessions_with_2plus_calls=int(r["total"]),
        )


def loops(a: Analysis) -> None:
    # per (server, tool) and count: how many keys, and the first sessions by name; the examples are the
    # sessions of the longest runs (ties by session), read level by level from the top
    levels = a.run(
        "SELECT server, tool, n, keys, ss, first, last FROM ru_loops WHERE n >= ? ORDER BY server, tool, n DESC",
        [a.th.loop_repeats],
    )
    per: dict[tuple[Any, Any], dict[str, Any]] = {}
    for lv in levels:
        r = per.setdefault((lv["server"], lv["tool"]), {"server": lv["server"], "tool": lv["tool"], "loops": 0,
                                                         "calls": 0, "longest": lv["n"], "first": lv["first"],
                                                         "last": lv["last"], "sessions": []})
        r["loops"] += lv["keys"]
        r["calls"] += lv["keys"] * lv["n"]
        r["first"], r["last"] = min(r["first"], lv["first"]), max(r["last"], lv["last"])
        r["sessions"] += sorted(lv["ss"])[: a.th.examples - len(r["sessions"])]
    rows = sorted(per.values(), key=lambda r: -r["calls"])
    for r in rows:
        a.add(
            "loop",
            WARNING,
            a.scoped(r["server"], r["tool"]),
            f"{r['tool']} called with the same arguments up to {r['longest']}x in one session "
            f"({r['loops']} session(s))",
            "an agent stuck in a loop: cache the result, make the tool's answer say the work is "
            "done, or cap repeats (rate_limit)",
            server=r["server"],
            sessions_looping=int(r["loops"]),
            repeated_calls=int(r["calls"]),
            longest_run=int(r["longest"]),
            window=[_t(r["first"]), _t(r["last"])],
            example_sessions=list(r["sessions"]),
        )


#: the most bytes of minute bitmaps :func:`fail_together` compares (pairs x bitmap size); past it the
#: pairs are counted by joining the minutes instead
FAIL_TOGETHER_BITMAP_BYTES = 256 << 20


def fail_together(a: Analysis) -> None:
    th = a.th
    # ru_errmin may list a minute of a tool twice (store/source.py): minutes are counted as distinct
    per_server = a.run("SELECT server, count(DISTINCT tool) AS k, min(minute) AS m0, max(minute) AS m1 "
                       "FROM ru_errmin GROUP BY server")
    if not per_server:
        return
    m0 = int(min(r["m0"] for r in per_server))
    bits = int(max(r["m1"] for r in per_server)) - m0 + 1
    pairs_n = sum(int(r["k"]) * (int(r["k"]) - 1) // 2 for r in per_server)
    params = [th.fail_together_min_buckets, th.fail_together_min_jaccard]
    if pairs_n * (bits // 8 + 1) <= FAIL_TOGETHER_BITMAP_BYTES:
        # a bitmap of the minutes each tool failed in, and a pair's common minutes by AND: a busy server's
        # tools each fail in most minutes of a week, and joining the minutes makes tools² rows a minute
        pairs = f"""
            WITH n AS (SELECT server, tool, bit_count(bits) AS buckets, bits FROM (
                           SELECT server, tool, bitstring_agg((minute - {m0})::BIGINT, 0, {bits - 1}) AS bits
                           FROM ru_errmin GROUP BY ALL)),
                 pair AS (SELECT a.server, a.tool AS a, b.tool AS b, bit_count(a.bits & b.bits) AS together,
                                 a.buckets AS a_buckets, b.buckets AS b_buckets
                          FROM n a JOIN n b ON a.server IS NOT DISTINCT FROM b.server AND a.tool < b.tool)
            SELECT * FROM pair WHERE together >= ?"""
    else:
        pairs = """
            WITH eb AS (SELECT DISTINCT server, tool, minute AS b FROM ru_errmin),
                 n AS (SELECT server, tool, count(*) AS buckets FROM eb GROUP BY 1, 2),
                 -- the pairs counted first, then joined to their tools' minute counts: the self-join's
                 -- rows (every pair of tools failing in the same minute) are not carried through two joins
                 pair AS (SELECT a.server, a.tool AS a, b.tool AS b, count(*) AS together
                          FROM eb a JOIN eb b ON a.b = b.b AND a.server IS NOT DISTINCT FROM b.server
                               AND a.tool < b.tool
                          GROUP BY ALL HAVING count(*) >= ?)
            SELECT pair.*, na.buckets AS a_buckets, nb.buckets AS b_buckets
            FROM pair JOIN n na ON na.tool = pair.a AND na.server IS NOT DISTINCT FROM pair.server
            JOIN n nb ON nb.tool = pair.b AND nb.server IS NOT DISTINCT FROM pair.server"""
    rows = a.run(
        f"""SELECT * FROM ({pairs}) WHERE together / (a_buckets + b_buckets - together) >= ?
            ORDER BY together DESC, server NULLS FIRST, a, b LIMIT 10""",
        params,
    )
    for r in rows:
        j = r["together"] / (r["a_buckets"] + r["b_buckets"] - r["together"])
        a.add(
            "fail_together",
            INFO,
            a.scoped(r["server"], f"{r['a']} + {r['b']}"),
            f"{r['a']} and {r['b']} fail in the same minutes ({j:.0%} overlap)",
            "they likely share a dependency: check it first when either fails",
            server=r["server"],
            minutes_both_failed=int(r["together"]),
            jaccard=_r(j, 2),
            minutes_failed={r["a"]: int(r["a_buckets"]), r["b"]: int(r["b_buckets"])},
        )


def unused(a: Analysis) -> None:
    rows = a.run(
        f"""
        SELECT server_name AS server, response_tool_names AS names FROM marks
        WHERE method = 'tools/list' AND response_tool_names IS NOT NULL {a.events_where}
        QUALIFY row_number() OVER (PARTITION BY server_name ORDER BY time DESC) = 1""",
        a.events_params,
    )
    for r in rows:
        called = a.run(
            "SELECT tool, sum(calls) AS n FROM ru_buckets WHERE method = 'tools/call' "
            "AND server IS NOT DISTINCT FROM ? GROUP BY 1",
            [r["server"]],
        )
        calls = sum(int(c["n"]) for c in called)
        if calls < a.th.unused_min_calls:
            continue
        never = sorted(set(r["names"]) - {c["tool"] for c in called})
        for name in never:
            a.add(
                "unused_tool",
                INFO,
                f"{r['server']}/{name}",
                f"{name} is listed by {r['server']} but was never called ({calls:,} calls to other tools)",
                "a candidate for removal: every listed tool costs context tokens in every session",
                server=r["server"],
                tool_calls_in_window=int(calls),
            )


#: each reads only what the run made before them (``req``, ``ru_*``) and makes tables of its own names,
#: so any of them may run beside another (analysis/run.py); findings in this order
DETECTORS = (client_spikes, tool_spikes, chains, loops, fail_together, unused)
