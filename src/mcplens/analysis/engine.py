"""The detectors: SQL over the store, one readable rule each, thresholds in :class:`Thresholds`.

Detectors that follow sessions or count buckets (chains, loops, read-then-send, error spikes,
volume, restarts) read the rollup tables of analysis/rollup.py: stored at compaction when the run
covers the whole store, else computed here from the window's events. The others read ``req``, a
view of the request events; the time filters of the recent-window rules prune Parquet row groups.
"Now" is the window's end, else the newest event: insights over yesterday's data read as they
would have yesterday.
"""

from __future__ import annotations

import math
import time
import tomllib
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from mcplens import event as ev
from mcplens.analysis import rollup
from mcplens.analysis.classify import DATA_ACCESS, ToolClasses
from mcplens.analysis.findings import CRITICAL, INFO, WARNING, Finding, sort_findings

Run = Callable[..., list[dict[str, Any]]]

#: redaction kinds that are credentials (an agent handling secrets), not personal data
SECRET_KINDS = frozenset(
    {
        "AWS_ACCESS_KEY",
        "AWS_SECRET_KEY",
        "GITHUB_TOKEN",
        "GITLAB_TOKEN",
        "SLACK_TOKEN",
        "STRIPE_KEY",
        "OPENAI_KEY",
        "ANTHROPIC_KEY",
        "GOOGLE_API_KEY",
        "PRIVATE_KEY",
        "JWT",
        "AUTH_HEADER",
        "URL_CREDENTIALS",
        "COOKIE",
        "REDACTED:PASSWORD",
        "REDACTED:SECRET",
        "REDACTED:TOKEN",
        "REDACTED:API_KEY",
        "REDACTED:AUTHORIZATION",
        "REDACTED:CREDENTIAL",
        "REDACTED:PRIVATE_KEY",
        "REDACTED:COOKIE",
        "REDACTED:SESSION",
    }
)
_ERROR = rollup.ERROR


@dataclass(frozen=True)
class Thresholds:
    """Every number a rule compares against. ``[insights]`` in a TOML file overrides any of them."""

    recent: float = 3600.0  # s: the window judged against the baseline ("the last hour")
    baseline: float = 7 * 86400.0  # s of history before it that forms the baseline
    min_history: float = 3 * 3600.0  # s of history a client or tool needs before a spike counts
    client_spike_factor: float = 5.0  # recent calls/hour >= factor x baseline calls/hour
    client_spike_min_calls: int = 30  # ... and at least this many calls in the recent window
    spike_over_busiest: float = 1.5  # ... and above this many times its busiest hour in the baseline
    tool_spike_factor: float = 10.0
    tool_spike_min_calls: int = 50
    chain_min_sessions: int = 5  # a chain must occur in this many sessions
    chain_min_share: float = 0.2  # ... and in this share of the sessions that made 2+ tool calls
    chain_min_confidence: float = 0.5  # ... and B follows A in this share of A's next calls (not chance)
    loop_repeats: int = 5  # the same tool with the same arguments this often in one session
    fail_together_min_buckets: int = 3  # minutes in which both tools failed
    fail_together_min_jaccard: float = 0.5
    unused_min_calls: int = 100  # only say "never called" once the server has served this many calls
    heavy_tail_min_calls: int = 50
    heavy_tail_p99_ms: float = 1000.0  # p99 at least this ...
    heavy_tail_ratio: float = 8.0  # ... and at least this many times the mean
    payload_p95_bytes: float = 10240.0
    error_rate_warning: float = 0.05  # over the recent window
    error_rate_critical: float = 0.20
    error_rate_min_calls: int = 50
    bucket: float = rollup.BUCKET  # s: buckets for error spikes
    spike_min_errors: int = 5  # a tool "spikes" in a bucket with this many errors ...
    spike_min_rate: float = 0.5  # ... at this error rate or more ...
    spike_over_baseline: float = 3.0  # ... and this many times its own error rate over the window
    shared_min_tools: int = 2  # tools spiking in one bucket to call it shared infrastructure
    rate_limited_warning: int = 10  # refused calls per client
    auth_warning: int = 5  # auth failures / unauthorized attempts of one client within one auth_bucket
    auth_critical: int = 20
    auth_bucket: float = 600.0
    exfil_window: float = rollup.EXFIL_WINDOW  # s from a sensitive read to an outbound call
    exfil_common_share: float = 0.2  # read->send in this share of sessions is the workflow: info only
    restart_burst: int = 5  # instance starts of one server within restart_window, each short-lived
    restart_window: float = 600.0
    examples: int = 5  # example session ids per finding

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Thresholds:
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ValueError(f"unknown [insights] setting(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return replace(cls(), **{k: type(getattr(cls(), k))(v) for k, v in data.items()})


@dataclass(frozen=True)
class Options:
    thresholds: Thresholds = field(default_factory=Thresholds)
    classes: ToolClasses = field(default_factory=ToolClasses)


def load_options(path: Path | None) -> Options:
    """``[insights]`` thresholds and ``[insights.tools]`` classification from a TOML file."""
    if path is None:
        return Options()
    with open(path, "rb") as f:
        data = tomllib.load(f)
    section = dict(data.get("insights") or {})
    tools = section.pop("tools", None) or {}
    classes = ToolClasses(**{k: tuple(tools.get(k) or ()) for k in ("data_access", "outbound", "ignore")})
    return Options(Thresholds.from_dict(section), classes)


def _t(ts: float | None) -> str | None:
    return None if ts is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _r(x: float | None, n: int = 1) -> float | None:
    return None if x is None else round(float(x), n)


#: a window with more requests counts sessions per chain approximately (HyperLogLog, ~2%)
EXACT_SESSIONS_UP_TO = 200_000
_SESSION = rollup.SESSION
_REQ = f"""
CREATE OR REPLACE TEMP VIEW req AS
SELECT time, server_name AS server, method, coalesce(target, method) AS tool, status, error_category,
       duration_s, response_size, response_tokens, request_size,
       {_SESSION} AS session, coalesce(client_id, client_name, 'unknown') AS client, client_name, redactions
FROM events WHERE kind = 'request' {{where}}"""


#: the requests that serve something (the performance rules' scope)
_SERVED = "('tools/call', 'resources/read', 'prompts/get')"


def _sql_value(v: Any) -> str:
    """Views take no parameters: the window's bounds and server name go in as literals."""
    if isinstance(v, str):
        return "'" + v.replace("'", "''") + "'"
    return repr(float(v))


class Analysis:
    """One run of every detector over one window."""

    def __init__(
        self, run: Run, options: Options, since: float | None, until: float | None, server: str | None = None
    ) -> None:
        self.run = run
        self.th = options.thresholds
        self.opts = options
        bounds = [(c, v) for c, v in (("time >= ", since), ("time < ", until), ("server_name = ", server))
                  if v is not None]
        self.server = server
        self.events_where = "".join(f" AND {c}?" for c, _ in bounds)
        self.events_params = [v for _, v in bounds]
        literal = "".join(f" AND {c}{_sql_value(v)}" for c, v in bounds)
        run(_REQ.format(where=literal))
        row = run("SELECT count(*) AS n, min(time) AS lo, max(time) AS hi FROM req")[0]
        self.n, self.lo = int(row["n"]), row["lo"]
        self.now = until if until is not None else (row["hi"] + 1e-6 if row["hi"] is not None else time.time())
        self.classes = self._classes()
        self.findings: list[Finding] = []
        self.from_rollups = False
        if self.n:
            self._tables(literal, whole_store=since is None and until is None)

    def _tables(self, where: str, *, whole_store: bool) -> None:
        """The ``ru_*`` tables: the stored rollups plus a delta for what is not compacted yet, when
        they answer this run exactly (see rollup.applies), else computed from the window's events."""
        th = self.th
        stored = getattr(self.run, "rollups", None) if whole_store else None
        if stored:
            files = [m["files"]["buckets"] for m in stored]
            tools = self.run(
                "SELECT DISTINCT tool FROM read_parquet(?) WHERE method = 'tools/call' UNION "
                "SELECT DISTINCT target FROM segment_events WHERE kind = 'request' AND method = 'tools/call'",
                [files],
            )
            self.reads, self.sends = rollup.split(self.classes, [r["tool"] for r in tools])
            if all(
                rollup.applies(m, reads=self.reads, sends=self.sends, exfil_window=th.exfil_window, bucket=th.bucket)
                for m in stored
            ):
                self._stored_tables(stored)
                return
        tools = self.run("SELECT DISTINCT tool FROM req WHERE method = 'tools/call'")
        self.reads, self.sends = rollup.split(self.classes, [r["tool"] for r in tools])
        self.run(f"CREATE OR REPLACE TEMP VIEW win_events AS SELECT * FROM events WHERE true {where}")
        rollup.compute(self.run, "win_events", None, reads=self.reads, sends=self.sends,
                       exfil_window=th.exfil_window, bucket=th.bucket, prefix="rw_",
                       exact_sessions=self.n <= EXACT_SESSIONS_UP_TO)
        self.bucket_size = th.bucket
        for t in rollup.TABLES:
            self.run(f"CREATE OR REPLACE TEMP TABLE ru_{t} AS {rollup.MERGE[t].format(src='rw_' + t)}")

    def _stored_tables(self, stored: list[dict[str, Any]]) -> None:
        has_delta = getattr(self.run, "has_segments", False)
        if has_delta:  # events not compacted yet: their delta over the compacted history
            rollup.compute(self.run, "segment_events", "batch_events", reads=self.reads, sends=self.sends,
                           exfil_window=self.th.exfil_window, bucket=rollup.BUCKET, prefix="rd_")
        server = "" if self.server is None else f" WHERE server IS NOT DISTINCT FROM {_sql_value(self.server)}"
        for t in rollup.TABLES:
            files = ", ".join(_sql_value(m["files"][t]) for m in stored)
            src = f"(SELECT * FROM read_parquet([{files}])" + (f" UNION ALL BY NAME SELECT * FROM rd_{t}" if has_delta
                                                                 else "") + f"){server}"
            self.run(f"CREATE OR REPLACE TEMP TABLE ru_{t} AS {rollup.MERGE[t].format(src=src)}")
        self.bucket_size = rollup.BUCKET
        self.from_rollups = True

    # ---- helpers -------------------------------------------------------------------------------

    def add(self, detector: str, severity: str, subject: str, title: str, action: str, **evidence: Any) -> None:
        self.findings.append(Finding(detector, severity, subject, title, evidence, action))

    def _classes(self) -> ToolClasses:
        hints = rollup.tool_hints(self.run, "events", self.events_where, self.events_params)
        return replace(self.opts.classes, hints={**hints, **self.opts.classes.hints})

    def examples(self, sql: str, params: list[Any]) -> list[str]:
        return [r["session"] for r in self.run(sql + f" LIMIT {int(self.th.examples)}", params)]

    # ---- usage -----------------------------------------------------------------------------

    def spikes(self, column: str, factor: float, min_calls: int, detector: str) -> None:
        th = self.th
        r0 = self.now - th.recent
        b0 = r0 - th.baseline
        hod = int((r0 % 86400) // 3600)
        rows = self.run(
            f"""WITH h AS (
                    SELECT {column} AS who, floor(time / 3600) AS hour, time >= ? AS recent, count(*) AS n,
                           any_value(client_name) AS client_name, min(time) AS first
                    FROM req WHERE time >= ? AND time < ? AND method = 'tools/call' GROUP BY 1, 2, 3)
                SELECT who, any_value(client_name) AS client_name,
                       sum(n) FILTER (WHERE NOT recent) AS base_calls,
                       sum(n) FILTER (WHERE recent) AS recent_calls,
                       coalesce(max(n) FILTER (WHERE NOT recent), 0) AS busiest_hour,
                       sum(n) FILTER (WHERE NOT recent AND hour % 24 = ?) AS same_hour,
                       min(first) AS first_seen
                FROM h GROUP BY 1 HAVING sum(n) FILTER (WHERE recent) >= ?""",
            [r0, b0, self.now, hod, min_calls],
        )
        for r in rows:
            history = r0 - max(r["first_seen"], b0)
            if history < th.min_history:
                continue
            hours = max(1, round(history / 3600))  # whole hours of history: events are spread over them
            rate = r["base_calls"] / hours
            days = math.floor(history / 86400)
            if days >= 3:  # enough days to know this hour of day: a busy morning is not a spike
                rate = max(rate, r["same_hour"] / days)
            recent_rate = r["recent_calls"] / (th.recent / 3600)
            # both: far above its usual rate, and above its busiest hour so far (sessions are bursty)
            busiest = th.spike_over_busiest * r["busiest_hour"]
            if recent_rate < factor * max(rate, 1 / hours) or r["recent_calls"] <= busiest:
                continue
            ratio = recent_rate / rate if rate else float("inf")
            who = r["who"]
            evidence = dict(
                recent_calls_per_hour=_r(recent_rate),
                baseline_calls_per_hour=_r(rate, 2),
                factor=_r(ratio) if ratio != float("inf") else None,
                baseline_hours=_r(hours),
                busiest_baseline_hour=int(r["busiest_hour"]),
                time_of_day_aware=days >= 3,
                window=[_t(r0), _t(self.now)],
            )
            if detector == "client_spike":
                evidence["client_name"] = r["client_name"]
                evidence["tools"] = self._top("tool", "client = ? AND time >= ?", [who, r0])
                evidence["example_sessions"] = self.examples(
                    "SELECT session, count(*) n FROM req WHERE client = ? AND time >= ? GROUP BY 1 ORDER BY n DESC",
                    [who, r0],
                )
                self.add(
                    detector,
                    WARNING,
                    who,
                    f"client {r['client_name'] or who} jumped to {recent_rate:,.0f} calls/h from {rate:,.1f}/h",
                    "a runaway agent or abuse: look at its sessions; throttle it "
                    "(instrument(rate_limit=...)) if it keeps on",
                    **evidence,
                )
            else:
                evidence["clients"] = self._top("client", "tool = ? AND time >= ?", [who, r0])
                evidence["example_sessions"] = self.examples(
                    "SELECT session, count(*) n FROM req WHERE tool = ? AND time >= ? GROUP BY 1 ORDER BY n DESC",
                    [who, r0],
                )
                self.add(
                    detector,
                    WARNING,
                    who,
                    f"tool {who} spiked to {recent_rate:,.0f} calls/h, {ratio:,.0f}x its baseline {rate:,.1f}/h",
                    "check whether one agent is looping or harvesting data (see the example sessions)",
                    **evidence,
                )
                if self.classes.classify(who) == DATA_ACCESS:
                    self.add(
                        "data_access_burst",
                        CRITICAL,
                        who,
                        f"burst in data-access tool {who}: {ratio:,.0f}x its usual rate",
                        "a burst of reads can be an exfiltration attempt driven by prompt injection: "
                        "review what these sessions read and where it went",
                        **evidence,
                    )

    def _top(self, column: str, where: str, params: list[Any]) -> dict[str, int]:
        rows = self.run(
            f"SELECT {column} AS k, count(*) AS n FROM req WHERE {where} GROUP BY 1 ORDER BY n DESC LIMIT 5", params
        )
        return {str(r["k"]): int(r["n"]) for r in rows}

    def chains(self) -> None:
        th = self.th
        rows = self.run(
            """
            WITH g AS (SELECT chain, chain[1:len(chain) - 1] AS prefix, sum(occurrences) AS occurrences,
                              sum(sessions) AS sessions FROM ru_chains GROUP BY chain),
                 tot AS (SELECT coalesce(sum(with_2_calls), 0) AS n FROM ru_sessions),
                 c AS (SELECT *, occurrences / sum(occurrences) OVER (PARTITION BY prefix) AS confidence FROM g)
            SELECT chain, occurrences, sessions, confidence, sessions / tot.n AS share, tot.n AS total FROM c, tot
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
                chain in (t["chain"][:2], t["chain"][1:]) and t["sessions"] >= r["sessions"] * 0.9 for t in longer
            ):
                continue
            text = " -> ".join(chain)
            first, rest = chain[0], ", ".join(chain[1:])
            self.add(
                "chain",
                INFO,
                text,
                f"agents chain {text} in {r['share']:.0%} of sessions",
                f"consider one tool doing {' + '.join(chain)}, returning {rest}'s data with {first}, or "
                f"caching {first}; if the order is forced by missing data, reorder the tools' outputs",
                occurrences=int(r["occurrences"]),
                sessions=int(r["sessions"]),
                share=_r(r["share"], 3),
                confidence=_r(r["confidence"], 3),
                sessions_with_2plus_calls=int(r["total"]),
            )

    def loops(self) -> None:
        rows = self.run(
            """
            SELECT tool, count(*) AS loops, sum(n) AS calls, max(n) AS longest, min(t0) AS first, max(t1) AS last,
                   list(session ORDER BY n DESC)[1:?] AS sessions
            FROM ru_loops WHERE n >= ? GROUP BY tool ORDER BY calls DESC""",
            [self.th.examples, self.th.loop_repeats],
        )
        for r in rows:
            self.add(
                "loop",
                WARNING,
                r["tool"],
                f"{r['tool']} called with the same arguments up to {r['longest']}x in one session "
                f"({r['loops']} session(s))",
                "an agent stuck in a loop: cache the result, make the tool's answer say the work is "
                "done, or cap repeats (rate_limit)",
                sessions_looping=int(r["loops"]),
                repeated_calls=int(r["calls"]),
                longest_run=int(r["longest"]),
                window=[_t(r["first"]), _t(r["last"])],
                example_sessions=list(r["sessions"]),
            )

    def fail_together(self) -> None:
        th = self.th
        rows = self.run(
            f"""
            WITH eb AS (SELECT DISTINCT tool, floor(time / 60) AS b FROM req WHERE {_ERROR}),
                 n AS (SELECT tool, count(*) AS buckets FROM eb GROUP BY 1)
            SELECT a.tool AS a, b.tool AS b, count(*) AS together, na.buckets AS a_buckets, nb.buckets AS b_buckets
            FROM eb a JOIN eb b ON a.b = b.b AND a.tool < b.tool
            JOIN n na ON na.tool = a.tool JOIN n nb ON nb.tool = b.tool
            GROUP BY ALL HAVING count(*) >= ?
               AND count(*) / (na.buckets + nb.buckets - count(*)) >= ?
            ORDER BY together DESC LIMIT 10""",
            [th.fail_together_min_buckets, th.fail_together_min_jaccard],
        )
        for r in rows:
            j = r["together"] / (r["a_buckets"] + r["b_buckets"] - r["together"])
            self.add(
                "fail_together",
                INFO,
                f"{r['a']} + {r['b']}",
                f"{r['a']} and {r['b']} fail in the same minutes ({j:.0%} overlap)",
                "they likely share a dependency: check it first when either fails",
                minutes_both_failed=int(r["together"]),
                jaccard=_r(j, 2),
                minutes_failed={r["a"]: int(r["a_buckets"]), r["b"]: int(r["b_buckets"])},
            )

    def unused(self) -> None:
        rows = self.run(
            f"""
            SELECT server_name AS server, response_tool_names AS names FROM events
            WHERE method = 'tools/list' AND response_tool_names IS NOT NULL {self.events_where}
            QUALIFY row_number() OVER (PARTITION BY server_name ORDER BY time DESC) = 1""",
            self.events_params,
        )
        for r in rows:
            called = self.run(
                "SELECT tool, sum(calls) AS n FROM ru_buckets WHERE method = 'tools/call' "
                "AND server IS NOT DISTINCT FROM ? GROUP BY 1",
                [r["server"]],
            )
            calls = sum(int(c["n"]) for c in called)
            if calls < self.th.unused_min_calls:
                continue
            never = sorted(set(r["names"]) - {c["tool"] for c in called})
            for name in never:
                self.add(
                    "unused_tool",
                    INFO,
                    f"{r['server']}/{name}",
                    f"{name} is listed by {r['server']} but was never called ({calls:,} calls to other tools)",
                    "a candidate for removal: every listed tool costs context tokens in every session",
                    server=r["server"],
                    tool_calls_in_window=int(calls),
                )

    # ---- performance -----------------------------------------------------------------------

    def performance(self) -> None:
        th = self.th
        # durations from the events; payload and token percentiles from the rollups' value counts
        sizes = rollup.percentiles_sql(
            f"(SELECT coalesce(target, method) AS tool, * FROM ru_values WHERE method IN {_SERVED})", "tool"
        )
        rows = self.run(f"""
            WITH d AS (
                SELECT tool, count(*) AS calls, avg(duration_s) * 1000 AS mean_ms,
                       quantile_cont(duration_s, [0.5, 0.95, 0.99]) AS lat, sum(duration_s) AS total_s
                FROM req WHERE method IN {_SERVED} GROUP BY 1),
            p AS ({sizes})
            SELECT d.*, s.p95 AS p95_bytes, s.vmax AS max_bytes, t.p95 AS p95_tokens, t.vsum AS total_tokens
            FROM d LEFT JOIN p s ON s.tool IS NOT DISTINCT FROM d.tool AND s.measure = 'size'
                   LEFT JOIN p t ON t.tool IS NOT DISTINCT FROM d.tool AND t.measure = 'tokens'
            ORDER BY d.tool""")
        for r in rows:
            if r["lat"] is None:
                continue
            p50, p95, p99 = (x * 1000 for x in r["lat"])
            if (
                r["calls"] >= th.heavy_tail_min_calls
                and p99 >= th.heavy_tail_p99_ms
                and p99 >= th.heavy_tail_ratio * r["mean_ms"]
            ):
                slow = self.run(
                    "SELECT count(*) AS n FROM req WHERE tool = ? AND duration_s * 1000 >= ?", [r["tool"], p99 * 0.5]
                )[0]["n"]
                self.add(
                    "heavy_tail",
                    WARNING,
                    r["tool"],
                    f"{r['tool']}: mean {r['mean_ms']:,.0f} ms but p99 {p99:,.0f} ms",
                    "some calls block the agent for seconds: add a timeout, find what the slow calls share "
                    "(arguments, backend), or make the tool asynchronous",
                    calls=int(r["calls"]),
                    mean_ms=_r(r["mean_ms"]),
                    p50_ms=_r(p50),
                    p95_ms=_r(p95),
                    p99_ms=_r(p99),
                    calls_over_half_p99=int(slow),
                )
            if r["p95_bytes"] is not None and r["p95_bytes"] >= th.payload_p95_bytes:
                self.add(
                    "payload_bloat",
                    WARNING,
                    r["tool"],
                    f"{r['tool']} returns {r['p95_bytes'] / 1024:,.1f} KB at p95 (~{r['p95_tokens']:,.0f} tokens)",
                    "return less: paginate, filter fields, summarise; each call fills the agent's context",
                    calls=int(r["calls"]),
                    p95_bytes=int(r["p95_bytes"]),
                    max_bytes=int(r["max_bytes"] or 0),
                    p95_tokens_est=int(r["p95_tokens"] or 0),
                    total_tokens_est=int(r["total_tokens"] or 0),
                    threshold_bytes=int(th.payload_p95_bytes),
                )
        by_time = sorted((r for r in rows if r["total_s"]), key=lambda r: -r["total_s"])[:3]
        total = sum(r["total_s"] for r in rows if r["total_s"]) or 1.0
        if by_time:
            self.add(
                "slowest_tools",
                INFO,
                "by total time",
                "most time spent in " + ", ".join(f"{r['tool']} ({r['total_s'] / total:.0%})" for r in by_time),
                "speeding these up helps agents most",
                tools=[
                    {
                        "tool": r["tool"],
                        "total_s": _r(r["total_s"], 2),
                        "share": _r(r["total_s"] / total, 3),
                        "calls": int(r["calls"]),
                        "mean_ms": _r(r["mean_ms"]),
                    }
                    for r in by_time
                ],
            )

    # ---- health ----------------------------------------------------------------------------

    def health(self) -> None:
        th = self.th
        r0 = self.now - th.recent
        row = self.run(
            f"SELECT count(*) AS calls, count(*) FILTER (WHERE {_ERROR}) AS errors, "
            "histogram(error_category) FILTER (WHERE error_category IS NOT NULL) AS cats "
            "FROM req WHERE time >= ?",
            [r0],
        )[0]
        if row["calls"] >= th.error_rate_min_calls:
            rate = row["errors"] / row["calls"]
            if rate >= th.error_rate_warning:
                sev = CRITICAL if rate >= th.error_rate_critical else WARNING
                self.add(
                    "error_rate",
                    sev,
                    "overall",
                    f"{rate:.1%} of calls failed in the last {th.recent / 60:.0f} min",
                    "see the per-tool findings below; `mcplens report --since 1h --sort errors`",
                    calls=int(row["calls"]),
                    errors=int(row["errors"]),
                    error_rate=_r(rate, 4),
                    categories=dict(row["cats"] or {}),
                    window=[_t(r0), _t(self.now)],
                )
        if 3600 % self.bucket_size == 0:
            vol = self.run(
                "SELECT sum(c) AS calls, count(*) AS hours, max(c) AS peak FROM "
                "(SELECT floor(bucket * ? / 3600) AS h, sum(calls) AS c FROM ru_buckets GROUP BY 1)",
                [self.bucket_size],
            )[0]
        else:
            vol = self.run(
                "SELECT sum(c) AS calls, count(*) AS hours, max(c) AS peak FROM "
                "(SELECT floor(time / 3600) AS h, count(*) AS c FROM req GROUP BY 1)"
            )[0]
        if vol["calls"]:
            self.add(
                "volume",
                INFO,
                "requests",
                f"{vol['calls']:,} requests over {vol['hours']} active hour(s), peak {vol['peak']:,}/h",
                "",
                calls=int(vol["calls"]),
                active_hours=int(vol["hours"]),
                peak_per_hour=int(vol["peak"]),
                window=[_t(self.lo), _t(self.now)],
            )
        self._error_spikes()
        self._restarts()
        self._resources()
        hits = self.run(
            "SELECT client, any_value(client_name) AS name, count(*) AS n, histogram(tool) AS tools "
            f"FROM req WHERE status = '{ev.RATE_LIMITED}' GROUP BY 1 ORDER BY n DESC"
        )
        for r in hits:
            sev = WARNING if r["n"] >= th.rate_limited_warning else INFO
            self.add(
                "rate_limited",
                sev,
                r["client"],
                f"{r['n']:,} calls from {r['name'] or r['client']} refused by the rate limiter",
                "one client needs throttling, or the limit is too low for real demand: compare with its baseline",
                hits=int(r["n"]),
                tools=dict(r["tools"]),
                client_name=r["name"],
            )

    def _error_spikes(self) -> None:
        th = self.th
        rows = self.run(
            """
            WITH x AS (SELECT tool, floor(bucket * ? / ?) AS bucket, category, calls, errors FROM ru_buckets),
                 base AS (SELECT tool, sum(errors) / sum(calls) AS rate FROM x GROUP BY 1),
                 b AS (SELECT tool, bucket, sum(calls) AS calls, sum(errors) AS errors,
                              list({'k': category, 'v': errors}) FILTER (WHERE category IS NOT NULL AND errors > 0)
                                  AS cats
                       FROM x GROUP BY 1, 2)
            SELECT b.*, base.rate AS base_rate FROM b JOIN base USING (tool)
            WHERE errors >= ? AND errors / calls >= ? AND errors / calls >= ? * base.rate
            ORDER BY bucket, tool""",
            [self.bucket_size, th.bucket, th.spike_min_errors, th.spike_min_rate, th.spike_over_baseline],
        )
        for r in rows:
            cats: Counter[str] = Counter()
            for c in r["cats"] or ():
                cats[c["k"]] += int(c["v"])
            r["cats"] = cats
        by_bucket: dict[float, list[dict[str, Any]]] = defaultdict(list)
        for r in rows:
            by_bucket[r["bucket"]].append(r)
        shared_tools: set[str] = set()
        episodes: list[tuple[list[float], list[dict[str, Any]]]] = []
        for bucket in sorted(by_bucket):
            spiking = by_bucket[bucket]
            if len(spiking) < th.shared_min_tools:
                continue
            if episodes and bucket - episodes[-1][0][-1] <= 1:
                episodes[-1][0].append(bucket)
                episodes[-1][1].extend(spiking)
            else:
                episodes.append(([bucket], list(spiking)))
        for buckets, spiking in episodes:
            cats = Counter()
            tools: Counter[str] = Counter()
            for r in spiking:
                cats.update(r["cats"] or {})
                tools[r["tool"]] += r["errors"]
            shared_tools.update(tools)
            top = ", ".join(c for c, _ in cats.most_common(2)) or "unknown"
            start, end = buckets[0] * th.bucket, (buckets[-1] + 1) * th.bucket
            self.add(
                "shared_failure",
                CRITICAL,
                f"{_t(start)}",
                f"errors spiked in {len(tools)} tools at once ({top}): shared infrastructure, not one tool",
                "check what these tools share — database, auth service, network — before any tool's code",
                tools=dict(tools.most_common()),
                categories=dict(cats.most_common()),
                window=[_t(start), _t(end)],
                example_sessions=self.examples(
                    f"SELECT DISTINCT session FROM req WHERE {_ERROR} AND time >= ? AND time < ?", [start, end]
                ),
            )
        single: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for r in rows:
            if r["tool"] not in shared_tools:
                single[r["tool"]].append(r)
        for tool, rs in single.items():
            cats = Counter()
            for r in rs:
                cats.update(r["cats"] or {})
            errors, calls = sum(r["errors"] for r in rs), sum(r["calls"] for r in rs)
            start, end = rs[0]["bucket"] * th.bucket, (rs[-1]["bucket"] + 1) * th.bucket
            self.add(
                "tool_failure",
                WARNING,
                tool,
                f"{tool} alone failed {errors}/{calls} calls ({', '.join(cats) or 'unknown'}); other tools were fine",
                "the problem is in this tool or its own backend: start from its error messages "
                f"(`mcplens report --tool {tool}`)",
                errors=int(errors),
                calls=int(calls),
                base_error_rate=_r(rs[0]["base_rate"], 4),
                categories=dict(cats),
                window=[_t(start), _t(end)],
            )

    def _restarts(self) -> None:
        th = self.th
        rows = self.run(
            "SELECT server, instance_id, started, last_seen, pid FROM ru_instances ORDER BY 1, started, instance_id"
        )
        per: dict[Any, list[dict[str, Any]]] = defaultdict(list)
        for r in rows:
            per[r["server"]].append(r)
        for server, inst in per.items():
            uptimes = [r["last_seen"] - r["started"] for r in inst]
            starts = [r["started"] for r in inst]
            burst = max((sum(1 for s in starts if t <= s < t + th.restart_window) for t in starts), default=0)
            short = sum(1 for u in uptimes if u < 60)
            sev = WARNING if burst >= th.restart_burst and short >= th.restart_burst else INFO
            self.add(
                "restarts",
                sev,
                str(server),
                f"{server}: {len(inst)} instance(s) seen, {len(inst) - 1} (re)start(s)",
                "many short-lived instances in a row mean the server is crashing and being restarted"
                if sev == WARNING
                else "",
                instances=len(inst),
                most_starts_in_window=burst,
                short_lived=short,
                longest_uptime_s=_r(max(uptimes)),
                latest=[
                    {
                        "instance": r["instance_id"],
                        "pid": r["pid"],
                        "started": _t(r["started"]),
                        "last_seen": _t(r["last_seen"]),
                    }
                    for r in inst[-3:]
                ],
            )

    def _resources(self) -> None:
        """CPU and memory of each server process (from its health records) against its call volume."""
        rows = self.run(
            f"""
            SELECT server_name AS server, instance_id, count(*) AS records,
                   arg_min(process_memory_usage, time) AS first_rss, arg_max(process_memory_usage, time) AS last_rss,
                   max(process_memory_usage) AS peak_rss,
                   -- the counters run from process start: between records where there are two, else since start
                   max(process_cpu_time) - CASE WHEN count(*) > 1 THEN min(process_cpu_time) ELSE 0 END AS cpu_s,
                   max(health_written) - CASE WHEN count(*) > 1 THEN min(health_written) ELSE 0 END AS calls,
                   max(time) - min(time) AS span_s
            FROM events WHERE kind = '{ev.HEALTH_KIND}' AND process_memory_usage IS NOT NULL {self.events_where}
            GROUP BY 1, 2 ORDER BY peak_rss DESC LIMIT 20""",
            self.events_params,
        )
        for r in rows:
            growth = (r["last_rss"] or 0) - (r["first_rss"] or 0)
            leaking = (
                r["records"] >= 3 and bool(r["first_rss"]) and growth >= 50 * 2**20
                and r["last_rss"] >= 2 * r["first_rss"]
            )
            per_call_ms = 1000 * r["cpu_s"] / r["calls"] if r["calls"] and r["cpu_s"] is not None else None
            self.add(
                "process_resources",
                WARNING if leaking else INFO,
                str(r["instance_id"]),
                f"{r['server']}: peak memory {r['peak_rss'] / 2**20:.0f} MB"
                + (f", {per_call_ms:.2f} ms CPU per event" if per_call_ms is not None else "")
                + (f"; memory grew {growth / 2**20:.0f} MB while serving" if leaking else ""),
                "memory that keeps growing with call volume points at a leak in a tool; profile the busiest tools"
                if leaking
                else "",
                server=r["server"],
                peak_rss_mb=_r(r["peak_rss"] / 2**20),
                first_rss_mb=_r((r["first_rss"] or 0) / 2**20),
                last_rss_mb=_r((r["last_rss"] or 0) / 2**20),
                cpu_seconds=_r(r["cpu_s"], 3),
                events=int(r["calls"] or 0),
                cpu_ms_per_event=_r(per_call_ms, 3),
                observed_s=_r(r["span_s"]),
            )

    # ---- security --------------------------------------------------------------------------

    def security(self) -> None:
        th = self.th
        if self.reads and self.sends:
            rows = self.run(
                """
                SELECT read_tool, send_tool, sum(sessions) AS sessions, max(max_send_bytes) AS max_send_bytes,
                       min(first_read) AS first, max(last_send) AS last,
                       list_sort(list_distinct(flatten(list(examples))))[1:?] AS examples
                FROM ru_exfil WHERE read_tool IN (SELECT unnest(?)) AND send_tool IN (SELECT unnest(?))
                GROUP BY 1, 2 ORDER BY sessions DESC, read_tool, send_tool""",
                [th.examples, self.reads, self.sends],
            )
            total = self.run("SELECT sum(with_calls) AS n FROM ru_sessions")[0]["n"] or 1
            for r in rows:
                share = r["sessions"] / total
                sev = INFO if share >= th.exfil_common_share else CRITICAL
                self.add(
                    "exfiltration",
                    sev,
                    f"{r['read_tool']} -> {r['send_tool']}",
                    f"{r['sessions']} session(s) read with {r['read_tool']} then sent out with {r['send_tool']}"
                    + (" (a common workflow here)" if sev == INFO else ""),
                    "read-then-send is how injected instructions exfiltrate data: review these sessions; "
                    "require confirmation for the outbound tool or mark it in [insights.tools]",
                    sessions=int(r["sessions"]),
                    share_of_sessions=_r(share, 4),
                    max_outbound_request_bytes=r["max_send_bytes"],
                    window=[_t(r["first"]), _t(r["last"])],
                    example_sessions=list(r["examples"]) if sev == CRITICAL else [],
                    within_s=th.exfil_window,
                )
        self._redactions()
        self._drift()
        rows = self.run(
            f"""
            WITH f AS (SELECT * FROM req WHERE status = '{ev.UNAUTHORIZED}' OR error_category = '{ev.CAT_AUTH}'),
                 peak AS (SELECT client, max(n) AS peak FROM (SELECT client, floor(time / ?) AS b, count(*) AS n
                                                               FROM f GROUP BY 1, 2) GROUP BY 1)
            SELECT client, any_value(client_name) AS name, count(*) AS n, any_value(peak.peak) AS peak,
                   histogram(status) AS statuses, histogram(tool) AS tools, list(DISTINCT session)[1:?] AS sessions,
                   min(time) AS first, max(time) AS last
            FROM f JOIN peak USING (client) GROUP BY 1 HAVING any_value(peak.peak) >= ? ORDER BY n DESC""",
            [th.auth_bucket, th.examples, th.auth_warning],
        )
        for r in rows:
            sev = CRITICAL if r["peak"] >= th.auth_critical else WARNING
            self.add(
                "auth_failures",
                sev,
                r["client"],
                f"{r['n']:,} authentication failures / unauthorized attempts from {r['name'] or r['client']}",
                "a misconfigured or expired credential, or someone probing: check this client's credentials "
                "and block it if unknown",
                failures=int(r["n"]),
                most_in_one_bucket=int(r["peak"]),
                statuses=dict(r["statuses"]),
                tools=dict(r["tools"]),
                client_name=r["name"],
                example_sessions=list(r["sessions"]),
                window=[_t(r["first"]), _t(r["last"])],
            )

    def _redactions(self) -> None:
        rows = self.run(
            """
            SELECT k AS kind, tool, sum(v) AS n, count(DISTINCT session) AS sessions, list(DISTINCT session)[1:?] AS ex
            FROM (SELECT tool, session, unnest(map_keys(m)) AS k, unnest(map_values(m)) AS v
                  FROM (SELECT tool, session, json_transform(redactions, '"MAP(VARCHAR, BIGINT)"') AS m
                        FROM req WHERE redactions IS NOT NULL))
            WHERE k LIKE 'INJECTION:%' OR k IN (SELECT unnest(?))
            GROUP BY 1, 2 ORDER BY n DESC""",
            [self.th.examples, sorted(SECRET_KINDS)],
        )
        secrets: dict[str, dict[str, Any]] = {}
        inject: dict[str, dict[str, Any]] = {}
        for r in rows:
            target = inject if r["kind"].startswith("INJECTION:") else secrets
            d = target.setdefault(r["tool"], {"kinds": Counter(), "sessions": 0, "ex": []})
            d["kinds"][r["kind"]] += int(r["n"])
            d["sessions"] = max(d["sessions"], int(r["sessions"]))
            d["ex"] = list(dict.fromkeys([*d["ex"], *r["ex"]]))[: self.th.examples]
        for tool, d in secrets.items():
            self.add(
                "secrets_in_arguments",
                WARNING,
                tool,
                f"secrets passed in {tool}'s arguments: " + ", ".join(f"{k} x{n}" for k, n in d["kinds"].most_common()),
                "they were redacted before storage, but the agent saw them: find where it got them and keep "
                "credentials out of prompts and tool inputs",
                kinds=dict(d["kinds"]),
                sessions=d["sessions"],
                example_sessions=d["ex"],
            )
        for tool, d in inject.items():
            self.add(
                "prompt_injection",
                CRITICAL,
                tool,
                f"prompt-injection phrases in {tool}'s arguments: "
                + ", ".join(f"{k.removeprefix('INJECTION:')} x{n}" for k, n in d["kinds"].most_common()),
                "an agent is passing on injected instructions: review the sessions and the content they read",
                kinds=dict(d["kinds"]),
                sessions=d["sessions"],
                example_sessions=d["ex"],
            )

    def _drift(self) -> None:
        import json

        rows = self.run(
            f"""
            SELECT server_name AS server, response_tool_hashes::VARCHAR AS h, min(time) AS first, max(time) AS last,
                   count(*) AS n, list(DISTINCT {_SESSION}) AS sessions, list(DISTINCT instance_id) AS instances
            FROM events WHERE method = 'tools/list' AND response_tool_hashes IS NOT NULL {self.events_where}
            GROUP BY 1, 2 ORDER BY 1, first""",
            self.events_params,
        )
        per: dict[Any, list[dict[str, Any]]] = defaultdict(list)
        for r in rows:
            per[r["server"]].append(r)
        for server, versions in per.items():
            for old, new in zip(versions, versions[1:], strict=False):
                a, b = json.loads(old["h"]), json.loads(new["h"])
                changed = sorted(k for k in a.keys() & b.keys() if a[k] != b[k])
                added, removed = sorted(b.keys() - a.keys()), sorted(a.keys() - b.keys())
                if not (changed or added or removed):
                    continue
                live = sorted(set(old["sessions"]) & set(new["sessions"]))
                same_instance = bool(set(old["instances"]) & set(new["instances"]))
                sev = CRITICAL if live or same_instance else WARNING
                what = "; ".join(
                    x
                    for x in (
                        f"changed {', '.join(changed)}" if changed else "",
                        f"added {', '.join(added)}" if added else "",
                        f"removed {', '.join(removed)}" if removed else "",
                    )
                    if x
                )
                self.add(
                    "tool_drift",
                    sev,
                    f"{server}@{_t(new['first'])}",
                    f"tool definitions of {server} changed"
                    + (
                        " under connected clients"
                        if live
                        else " in a running server"
                        if same_instance
                        else " between server versions"
                    )
                    + f": {what}",
                    "a tool whose description changes after approval can carry injected instructions "
                    "(rug pull): diff the definitions and re-approve",
                    changed=changed,
                    added=added,
                    removed=removed,
                    first_seen_new=_t(new["first"]),
                    last_seen_old=_t(old["last"]),
                    sessions_that_saw_both=live[: self.th.examples],
                    same_instance=same_instance,
                )


DETECTORS = ("usage", "performance", "health", "security")


def analyze(
    run: Run,
    options: Options | None = None,
    *,
    since: float | None = None,
    until: float | None = None,
    server: str | None = None,
) -> list[Finding]:
    """Every detector over ``[since, until)``; findings most severe first."""
    opts = options or Options()
    a = Analysis(run, opts, since, until, server)
    if a.n == 0:
        return []
    th = opts.thresholds
    a.spikes("client", th.client_spike_factor, th.client_spike_min_calls, "client_spike")
    a.spikes("tool", th.tool_spike_factor, th.tool_spike_min_calls, "tool_spike")
    a.chains()
    a.loops()
    a.fail_together()
    a.unused()
    a.performance()
    a.health()
    a.security()
    return sort_findings(a.findings)


def insights(
    store: Any,
    options: Options | None = None,
    *,
    since: float | None = None,
    until: float | None = None,
    server: str | None = None,
    attempts: int = 5,
) -> list[Finding]:
    """:func:`analyze` over a :class:`~mcplens.store.local.LocalStore`, retried if a compaction races it."""
    for attempt in range(attempts):
        try:
            with store.reader(since=since) as run:
                return analyze(run, options, since=since, until=until, server=server)
        except Exception as e:  # noqa: BLE001
            if attempt + 1 >= attempts or type(e).__module__.split(".")[0] not in ("duckdb", "_duckdb"):
                raise
            time.sleep(0.05 * 2**attempt)
    raise AssertionError("unreachable")
