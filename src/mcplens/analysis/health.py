"""Health detectors: error rates broken down by tool, client and category, error spikes (one tool or
shared infrastructure), volume, restarts and crashes, process resources, rate limiting."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import TYPE_CHECKING, Any

from mcplens import event as ev
from mcplens.analysis.core import _ERROR, _SAME, _r, _t
from mcplens.analysis.findings import CRITICAL, INFO, WARNING
from mcplens.store import sql

if TYPE_CHECKING:
    from mcplens.analysis.core import Analysis


def detect(a: Analysis) -> None:
    for d in DETECTORS:
        d(a)


def error_rate(a: Analysis) -> None:
    """Each server's share of failed calls in the recent window."""
    th = a.th
    r0 = a.now - th.recent
    rows = a.run(
        f"""SELECT server, count(*) AS calls, count(*) FILTER (WHERE {_ERROR}) AS errors,
                   histogram(coalesce(error_category, 'unknown')) FILTER (WHERE {_ERROR}) AS cats
            FROM {a.req_from(r0)} WHERE time >= ? GROUP BY 1 ORDER BY 1""",
        [r0],
    )
    for row in rows:  # per server: one failing server is not diluted by a busy healthy one
        if row["calls"] < th.error_rate_min_calls:
            continue
        rate = row["errors"] / row["calls"]
        if rate < th.error_rate_warning:
            continue
        sev = CRITICAL if rate >= th.error_rate_critical else WARNING
        server = row["server"]
        a.add(
            "error_rate",
            sev,
            "overall" if len(a.servers) <= 1 else str(server),
            f"{rate:.1%} of calls to {server} failed in the last {th.recent / 60:.0f} min",
            "see the per-tool findings below; `mcplens report --since 1h --sort errors`",
            server=server,
            calls=int(row["calls"]),
            errors=int(row["errors"]),
            error_rate=_r(rate, 4),
            categories=dict(row["cats"] or {}),
            **_error_breakdown(a, server, r0),
            window=[_t(r0), _t(a.now)],
        )


def volume(a: Analysis) -> None:
    if 3600 % a.bucket_size == 0:
        vol = a.run(
            "SELECT sum(c) AS calls, count(*) AS hours, max(c) AS peak FROM "
            "(SELECT floor(bucket * ? / 3600) AS h, sum(calls) AS c FROM ru_buckets GROUP BY 1)",
            [a.bucket_size],
        )[0]
    else:
        vol = a.run(
            "SELECT sum(c) AS calls, count(*) AS hours, max(c) AS peak FROM "
            "(SELECT floor(time / 3600) AS h, count(*) AS c FROM req GROUP BY 1)"
        )[0]
    if vol["calls"]:
        a.add(
            "volume",
            INFO,
            "requests",
            f"{vol['calls']:,} requests over {vol['hours']} active hour(s), peak {vol['peak']:,}/h",
            "",
            calls=int(vol["calls"]),
            active_hours=int(vol["hours"]),
            peak_per_hour=int(vol["peak"]),
            window=[_t(a.lo), _t(a.now)],
        )


def rate_limited(a: Analysis) -> None:
    th = a.th
    hits = a.run(
        "SELECT client, min(client_name) AS name, count(*) AS n, histogram(tool) AS tools "
        f"FROM rare WHERE status = '{ev.RATE_LIMITED}' GROUP BY 1 ORDER BY n DESC, client"
    )
    for r in hits:
        sev = WARNING if r["n"] >= th.rate_limited_warning else INFO
        a.add(
            "rate_limited",
            sev,
            r["client"],
            f"{r['n']:,} calls from {r['name'] or r['client']} refused by the rate limiter",
            "one client needs throttling, or the limit is too low for real demand: compare with its baseline",
            hits=int(r["n"]),
            tools=dict(r["tools"]),
            client_name=r["name"],
        )


def _error_breakdown(a: Analysis, server: Any, since: float, until: float | None = None,
                     tools: list[str] | None = None) -> dict[str, Any]:
    """Errors by tool and by client, each split by category: where to look first."""
    cond = f"{_ERROR} AND {_SAME} AND time >= ?" + (" AND time < ?" if until is not None else "")
    params: list[Any] = [server, since] + ([until] if until is not None else [])
    if tools:
        cond += " AND tool IN (SELECT unnest(?))"
        params.append(tools)
    out: dict[str, Any] = {}
    for column, key in (("tool", "errors_by_tool"), ("coalesce(client_name, client)", "errors_by_client")):
        rows = a.run(
            f"""SELECT k, sum(n) AS total, list({{'c': cat, 'n': n}} ORDER BY n DESC, cat) AS cats FROM (
                    SELECT {column} AS k, coalesce(error_category, 'unknown') AS cat, count(*) AS n
                    FROM {a.req_from(since)} WHERE {cond} GROUP BY 1, 2)
                GROUP BY k ORDER BY total DESC, k LIMIT 10""",
            params,
        )
        out[key] = {str(r["k"]): {str(c["c"]): int(c["n"]) for c in r["cats"]} for r in rows}
    return out


def error_spikes(a: Analysis) -> None:
    th = a.th
    label = sql.label("method", "tool")
    rows = a.run(
        f"""
        WITH x AS (SELECT server, {label} AS tool, floor(bucket * ? / ?) AS bucket, calls, errors FROM ru_buckets),
             base AS (SELECT server, tool, sum(errors) / sum(calls) AS rate FROM x GROUP BY 1, 2),
             b AS (SELECT server, tool, bucket, sum(calls) AS calls, sum(errors) AS errors FROM x GROUP BY 1, 2, 3),
             hit AS (SELECT b.*, base.rate AS base_rate
                     FROM b JOIN base ON base.server IS NOT DISTINCT FROM b.server AND base.tool = b.tool
                     WHERE errors >= ? AND errors / calls >= ? AND errors / calls >= ? * base.rate),
             -- the categories of the spiking buckets only (a list per bucket of a week is ~0.05 s)
             e AS (SELECT server, {label} AS tool, floor(bucket * ? / ?) AS bucket, category, errors
                   FROM ru_bucket_errors),
             c AS (SELECT e.server, e.tool, e.bucket, list({{'k': category, 'v': e.errors}}) AS cats
                   FROM e SEMI JOIN hit ON hit.server IS NOT DISTINCT FROM e.server AND hit.tool = e.tool
                                           AND hit.bucket = e.bucket
                   GROUP BY 1, 2, 3)
        SELECT hit.server, hit.tool, hit.bucket, hit.calls, hit.errors, c.cats, hit.base_rate
        FROM hit LEFT JOIN c ON c.server IS NOT DISTINCT FROM hit.server AND c.tool = hit.tool AND c.bucket = hit.bucket
        ORDER BY hit.server, hit.bucket, hit.tool""",
        [a.bucket_size, th.bucket, th.spike_min_errors, th.spike_min_rate, th.spike_over_baseline,
         a.bucket_size, th.bucket],
    )
    for r in rows:
        cats: Counter[str] = Counter()
        for c in r["cats"] or ():
            cats[c["k"]] += int(c["v"])
        r["cats"] = cats
    by_bucket: dict[tuple[Any, float], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_bucket[(r["server"], r["bucket"])].append(r)
    shared_tools: set[tuple[Any, str]] = set()
    episodes: list[tuple[Any, list[float], list[dict[str, Any]]]] = []
    for (server, bucket) in sorted(by_bucket, key=lambda k: (str(k[0]), k[1])):
        spiking = by_bucket[(server, bucket)]
        if len(spiking) < th.shared_min_tools:
            continue
        if episodes and episodes[-1][0] == server and bucket - episodes[-1][1][-1] <= 1:
            episodes[-1][1].append(bucket)
            episodes[-1][2].extend(spiking)
        else:
            episodes.append((server, [bucket], list(spiking)))
    for server, buckets, spiking in episodes:
        cats = Counter()
        tools: Counter[str] = Counter()
        for r in spiking:
            cats.update(r["cats"] or {})
            tools[r["tool"]] += r["errors"]
        shared_tools.update((server, t) for t in tools)
        top = ", ".join(c for c, _ in cats.most_common(2)) or "unknown"
        start, end = buckets[0] * th.bucket, (buckets[-1] + 1) * th.bucket
        a.add(
            "shared_failure",
            CRITICAL,
            a.scoped(server, f"{_t(start)}"),
            f"errors spiked in {len(tools)} tools of {server} at once ({top}): shared infrastructure, not one tool",
            "check what these tools share — database, auth service, network — before any tool's code",
            server=server,
            tools=dict(tools.most_common()),
            categories=dict(cats.most_common()),
            **_error_breakdown(a, server, start, end, list(tools)),
            window=[_t(start), _t(end)],
            example_sessions=a.examples(
                f"SELECT DISTINCT session FROM {a.req_from(start)} WHERE {_ERROR} AND {_SAME} AND time >= ? "
                "AND time < ? "
                "ORDER BY session",
                [server, start, end],
            ),
        )
    single: dict[tuple[Any, str], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        if (r["server"], r["tool"]) not in shared_tools:
            single[(r["server"], r["tool"])].append(r)
    for (server, tool), rs in single.items():
        cats = Counter()
        for r in rs:
            cats.update(r["cats"] or {})
        errors, calls = sum(r["errors"] for r in rs), sum(r["calls"] for r in rs)
        start, end = rs[0]["bucket"] * th.bucket, (rs[-1]["bucket"] + 1) * th.bucket
        a.add(
            "tool_failure",
            WARNING,
            a.scoped(server, tool),
            f"{tool} alone failed {errors}/{calls} calls ({', '.join(cats) or 'unknown'}); other tools were fine",
            "the problem is in this tool or its own backend: start from its error messages "
            f"(`mcplens report --tool {tool}`)",
            server=server,
            errors=int(errors),
            calls=int(calls),
            base_error_rate=_r(rs[0]["base_rate"], 4),
            categories=dict(cats),
            **_error_breakdown(a, server, start, end, [tool]),
            window=[_t(start), _t(end)],
        )


def restarts(a: Analysis) -> None:
    """Restarts judged against the transport. A stdio server lives one process per conversation,
    so new instances are normal there; what is not is a crash: an instance that ended without a
    clean stop (no closing health record after its last request, or calls cut off by the server
    exiting) while it was serving, and another instance of the server came after it. Over HTTP or
    in-process, a burst of short-lived instances is a crash loop too."""
    th = a.th
    rows = a.run(
        "SELECT server, instance_id, started, last_seen, pid, transport, last_request, last_health, requests, "
        "exited FROM ru_instances ORDER BY 1, started, instance_id"
    )
    # an instance's events before the server named itself (a proxy's version probe) are its own
    named = {r["instance_id"]: r["server"] for r in rows if r["server"] is not None}
    merged: dict[Any, dict[str, Any]] = {}
    for r in rows:
        key = r["instance_id"]
        if key in merged:
            m = merged[key]
            m["started"], m["last_seen"] = min(m["started"], r["started"]), max(m["last_seen"], r["last_seen"])
            for k in ("last_request", "last_health"):
                m[k] = max((x for x in (m[k], r[k]) if x is not None), default=None)
            m["requests"] = (m["requests"] or 0) + (r["requests"] or 0)
            m["exited"] = (m["exited"] or 0) + (r["exited"] or 0)
            m["transport"] = m["transport"] or r["transport"]
        else:
            merged[key] = dict(r, server=named.get(key))
    per: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for r in sorted(merged.values(), key=lambda r: (r["started"], str(r["instance_id"]))):
        if r["server"] is None and not r["requests"]:
            continue  # a process that never named its server and served nothing: nothing to judge
        per[r["server"]].append(r)
    for server, inst in per.items():
        name = server if server is not None else "(unnamed server)"
        crashed = []
        for i, r in enumerate(inst):
            followed = any(o["started"] >= r["last_seen"] for o in inst[i + 1:])
            unclean = bool(r["requests"]) and (r["last_health"] is None or r["last_health"] < r["last_request"])
            if r["exited"] or (followed and unclean):
                crashed.append(r)
        uptimes = [r["last_seen"] - r["started"] for r in inst]
        starts = [r["started"] for r in inst]
        pipe = all(r["transport"] == "pipe" for r in inst)

        def most_in_window(times: list[float]) -> int:
            return max((sum(1 for s in times if t <= s < t + th.restart_window) for t in times), default=0)

        burst = most_in_window(starts)
        crash_burst = most_in_window([r["last_seen"] for r in crashed])
        short = sum(1 for u in uptimes if u < 60)
        loop = not pipe and burst >= th.restart_burst and short >= th.restart_burst
        sev = WARNING if crash_burst >= th.crash_warning or loop else INFO
        a.add(
            "restarts",
            sev,
            str(name),
            f"{name}: {len(inst)} instance(s) seen"
            + (f" (stdio: one process per session is normal), {len(crashed)} ended without a clean stop"
               if pipe else f", {len(inst) - 1} (re)start(s), {len(crashed)} ended without a clean stop"),
            "instances that end without a clean stop while serving mean the server is crashing: "
            "look at its stderr and the calls cut off (status exception, ServerExited)"
            if sev == WARNING
            else "",
            server=server,
            transport="pipe" if pipe else sorted({str(r["transport"]) for r in inst}),
            instances=len(inst),
            crashed=len(crashed),
            most_crashes_in_window=crash_burst,
            most_starts_in_window=burst,
            short_lived=short,
            longest_uptime_s=_r(max(uptimes)),
            latest_crashes=[
                {"instance": r["instance_id"], "pid": r["pid"], "last_seen": _t(r["last_seen"]),
                 "calls_cut_off": int(r["exited"] or 0)}
                for r in crashed[-3:]
            ],
        )


def resources(a: Analysis) -> None:
    """CPU and memory of each server's processes (from their health records) against their call
    volume: one finding per server, the busiest and any leaking instance named in it."""
    rows = a.run(
        f"""
        SELECT server_name AS server, instance_id, count(*) AS records,
               arg_min(process_memory_usage, time) AS first_rss, arg_max(process_memory_usage, time) AS last_rss,
               max(process_memory_usage) AS peak_rss,
               -- the counters run from process start: between records where there are two, else since start
               max(process_cpu_time) - CASE WHEN count(*) > 1 THEN min(process_cpu_time) ELSE 0 END AS cpu_s,
               max(health_written) - CASE WHEN count(*) > 1 THEN min(health_written) ELSE 0 END AS calls,
               max(time) - min(time) AS span_s
        FROM marks WHERE kind = '{ev.HEALTH_KIND}' AND process_memory_usage IS NOT NULL {a.events_where}
        GROUP BY 1, 2 ORDER BY 1 NULLS FIRST, 2""",  # of equal peaks the first id is named, every run
        a.events_params,
    )
    per: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        r["growth"] = (r["last_rss"] or 0) - (r["first_rss"] or 0)
        r["leaking"] = (
            r["records"] >= 3 and bool(r["first_rss"]) and r["growth"] >= 50 * 2**20
            and r["last_rss"] >= 2 * r["first_rss"]
        )
        per[r["server"]].append(r)
    for server, inst in sorted(per.items(), key=lambda kv: str(kv[0])):
        name = server if server is not None else "(unnamed server)"
        leaking = [r for r in inst if r["leaking"]]
        peak = max(inst, key=lambda r: r["peak_rss"] or 0)
        cpu = sum(r["cpu_s"] or 0 for r in inst)
        calls = sum(r["calls"] or 0 for r in inst)
        per_call_ms = 1000 * cpu / calls if calls else None
        worst = max(leaking, key=lambda r: r["growth"]) if leaking else None
        a.add(
            "process_resources",
            WARNING if leaking else INFO,
            str(name),
            f"{name}: peak memory {peak['peak_rss'] / 2**20:.0f} MB over {len(inst)} process(es)"
            + (f", {per_call_ms:.2f} ms CPU per event" if per_call_ms is not None else "")
            + (f"; memory grew {worst['growth'] / 2**20:.0f} MB while serving" if worst else ""),
            "memory that keeps growing with call volume points at a leak in a tool; profile the busiest tools"
            if leaking
            else "",
            server=server,
            processes=len(inst),
            leaking_processes=[r["instance_id"] for r in leaking][:5],
            peak_rss_mb=_r(peak["peak_rss"] / 2**20),
            peak_instance=peak["instance_id"],
            first_rss_mb=_r(((worst or peak)["first_rss"] or 0) / 2**20),
            last_rss_mb=_r(((worst or peak)["last_rss"] or 0) / 2**20),
            cpu_seconds=_r(cpu, 3),
            events=int(calls),
            cpu_ms_per_event=_r(per_call_ms, 3),
            observed_s=_r(max(r["span_s"] or 0 for r in inst)),
        )


#: the area's detectors, in the order of their findings: each rule on its own, so a run spreads them
#: over its sources (store/source.py ``each``)
DETECTORS = (error_rate, volume, error_spikes, restarts, resources, rate_limited)
