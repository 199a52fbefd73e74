"""The detectors: SQL over the store, one readable rule each, thresholds in :class:`Thresholds`.

Detectors that follow sessions or count buckets (chains, loops, read-then-send, error spikes,
volume, restarts) read the rollup tables of store/local/rollup.py: stored at compaction when the run
covers the whole store, else computed here from the window's events. The others read ``req``, a
view of the request events; the time filters of the recent-window rules prune Parquet row groups.
"Now" is the window's end, else the newest event: insights over yesterday's data read as they
would have yesterday.
"""

from __future__ import annotations

import fnmatch
import math
import time
import tomllib
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from mcplens import event as ev
from mcplens.analysis.findings import CRITICAL, INFO, RANK, WARNING, Finding, sort_findings
from mcplens.classify import DATA_ACCESS, HIGH, MEDIUM, ToolClasses
from mcplens.store.local import rollup

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
_SAME = "server IS NOT DISTINCT FROM ?"  # the server a finding is about (NULL: an unnamed server)


@dataclass(frozen=True)
class Thresholds:
    """Every number a rule compares against. ``[insights]`` in a TOML file overrides any of them."""

    recent: float = 3600.0  # s: the window judged against the baseline ("the last hour")
    baseline: float = 7 * 86400.0  # s of history before it that forms the baseline
    min_history: float = 3 * 3600.0  # s of history a client or tool needs before a spike counts
    client_spike_factor: float = 5.0  # recent rate >= factor x the baseline rate of the same window length
    client_spike_min_calls: int = 30  # ... and at least this many calls in a recent hour (scaled by window)
    spike_over_busiest: float = 1.5  # ... and above this many times its busiest such window in the baseline
    tool_spike_factor: float = 5.0
    tool_spike_min_calls: int = 50
    #: minutes: spikes are judged over each of these windows against the same window's baseline
    spike_windows: tuple[int, ...] = (5, 15, 60)
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
    restart_burst: int = 5  # (HTTP/in-process) instance starts of one server within restart_window, each short-lived
    restart_window: float = 600.0
    crash_warning: int = 3  # instances that ended without a clean stop while serving, within restart_window
    examples: int = 5  # example session ids per finding

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Thresholds:
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ValueError(f"unknown [insights] setting(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        default = cls()

        def cast(k: str, v: Any) -> Any:
            kind = type(getattr(default, k))
            return tuple(int(x) for x in v) if kind is tuple else kind(v)

        return replace(default, **{k: cast(k, v) for k, v in data.items()})


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
    classes = ToolClasses(
        **{k: tuple(tools.get(k) or ()) for k in ("data_access", "outbound", "ignore", "sensitive")}
    )
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
SELECT time, server_name AS server, method, target,
       {rollup.label('method', 'target')} AS tool, status, error_category,
       duration_s, response_size, response_tokens, request_size,
       {_SESSION} AS session, coalesce(client_id, client_name, 'unknown') AS client, client_name, redactions
FROM events WHERE kind = 'request' AND proxy_direction IS NULL {{where}}"""


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
        row = run("SELECT count(*) AS n, min(time) AS lo, max(time) AS hi, "
                  "list(DISTINCT server ORDER BY server) FILTER (WHERE server IS NOT NULL) AS servers FROM req")[0]
        self.n, self.lo = int(row["n"]), row["lo"]
        self.now = until if until is not None else (row["hi"] + 1e-6 if row["hi"] is not None else time.time())
        self.classes = self._classes()
        # a proxy learns the server's name from the handshake reply: what came before it has none
        self.servers = list(row["servers"] or ())
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

    def scoped(self, server: Any, subject: str) -> str:
        """A subject within its server: every baseline is per server, so with several servers in the
        store the same tool name on two servers is two subjects (``server/subject``)."""
        return subject if len(self.servers) <= 1 else f"{server}/{subject}"

    def _classes(self) -> ToolClasses:
        hints = rollup.tool_hints(self.run, "events", self.events_where, self.events_params)
        return replace(self.opts.classes, hints={**hints, **self.opts.classes.hints})

    def examples(self, sql: str, params: list[Any]) -> list[str]:
        return [r["session"] for r in self.run(sql + f" LIMIT {int(self.th.examples)}", params)]

    # ---- usage -----------------------------------------------------------------------------

    def spikes(self, column: str, factor: float, min_calls: int, detector: str) -> None:
        """A client's or a tool's calls over each of ``spike_windows`` (5, 15, 60 min) against the same
        window length in its own baseline on its own server: a burst of half an hour shows in the 15-min
        window although the hour around it looks ordinary. Reported once, over the longest window that
        fires (its rate is the most representative)."""
        th = self.th
        windows = sorted({int(w) * 60 for w in th.spike_windows if int(w) > 0}) or [3600]
        unit = math.gcd(*windows)
        day_units = max(1, round(86400 / unit))
        b0 = self.now - windows[-1] - th.baseline
        self.run(
            f"""CREATE OR REPLACE TEMP TABLE spike_units AS
                SELECT server, {column} AS who, floor((? - time) / ?)::BIGINT AS ago, count(*) AS n,
                       any_value(client_name) AS client_name, min(time) AS first
                FROM req WHERE time >= ? AND time < ? AND method = 'tools/call' GROUP BY ALL""",
            [self.now, float(unit), b0, self.now],
        )
        best: dict[tuple[Any, Any], dict[str, Any]] = {}
        # the baseline ends where the longest window starts: a burst of half an hour is not its own baseline
        lead = windows[-1] // unit
        base_units = int(th.baseline // unit)
        for w in windows:
            k = w // unit
            need = max(5, math.ceil(min_calls * math.sqrt(w / 3600)))
            rows = self.run(
                f"""WITH x AS (SELECT *, ago < {k} AS recent, ago >= {lead} AS base, (ago - {lead}) // {k} AS win
                               FROM spike_units WHERE ago < {lead + base_units} AND (ago < {k} OR ago >= {lead})),
                    busy AS (SELECT server, who, max(n) AS busiest FROM (
                               SELECT server, who, win, sum(n) AS n FROM x WHERE base GROUP BY ALL)
                             GROUP BY ALL)
                SELECT x.server, x.who, any_value(client_name) AS client_name,
                       coalesce(sum(n) FILTER (WHERE base), 0) AS base_calls,
                       sum(n) FILTER (WHERE recent) AS recent_calls,
                       coalesce(any_value(busy.busiest), 0) AS busiest,
                       coalesce(sum(n) FILTER (WHERE base AND ago >= {day_units} AND ago % {day_units} < {k}), 0)
                           AS same_window,
                       min(first) AS first_seen
                FROM x LEFT JOIN busy ON busy.server IS NOT DISTINCT FROM x.server AND busy.who = x.who
                GROUP BY x.server, x.who HAVING sum(n) FILTER (WHERE recent) >= ?""",
                [need],
            )
            b1 = self.now - windows[-1]  # where the baseline ends
            for r in rows:
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
                best[(r["server"], r["who"])] = dict(r, window=w, rate=rate, n_windows=n_windows, days=days)
        for (server, who), r in sorted(best.items(), key=lambda kv: (str(kv[0][0]), str(kv[0][1]))):
            w, rate = r["window"], r["rate"]
            per_hour = 3600 / w
            recent_rate = r["recent_calls"] * per_hour
            ratio = r["recent_calls"] / rate if rate else float("inf")
            r0 = self.now - w
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
                window=[_t(r0), _t(self.now)],
            )
            span = f"over {w // 60} min" if w != 3600 else "in the last hour"
            if detector == "client_spike":
                evidence["client_name"] = r["client_name"]
                evidence["tools"] = self._top("tool", f"client = ? AND {_SAME} AND time >= ?", [who, server, r0])
                evidence["example_sessions"] = self.examples(
                    f"SELECT session, count(*) n FROM req WHERE client = ? AND {_SAME} AND time >= ? "
                    "GROUP BY 1 ORDER BY n DESC, session",
                    [who, server, r0],
                )
                self.add(
                    detector,
                    WARNING,
                    self.scoped(server, who),
                    f"client {r['client_name'] or who} jumped to {recent_rate:,.0f} calls/h {span} "
                    f"from {rate * per_hour:,.1f}/h",
                    "a runaway agent or abuse: look at its sessions; throttle it "
                    "(instrument(rate_limit=...)) if it keeps on",
                    **evidence,
                )
                continue
            evidence["clients"] = self._top("client", f"tool = ? AND {_SAME} AND time >= ?", [who, server, r0])
            evidence["example_sessions"] = self.examples(
                f"SELECT session, count(*) n FROM req WHERE tool = ? AND {_SAME} AND time >= ? "
                "GROUP BY 1 ORDER BY n DESC, session",
                [who, server, r0],
            )
            self.add(
                detector,
                WARNING,
                self.scoped(server, who),
                f"tool {who} spiked to {recent_rate:,.0f} calls/h {span}, {ratio:,.1f}x its baseline "
                f"{rate * per_hour:,.1f}/h",
                "check whether one agent is looping or harvesting data (see the example sessions)",
                **evidence,
            )
            if self.classes.classify(who) == DATA_ACCESS:
                level, why = self.classes.sensitivity(who)
                self.add(
                    "data_access_burst",
                    {HIGH: CRITICAL, MEDIUM: WARNING}.get(level, INFO),
                    self.scoped(server, who),
                    f"burst in data-access tool {who}: {ratio:,.1f}x its usual rate {span} ({level} sensitivity)",
                    "a burst of reads can be an exfiltration attempt driven by prompt injection: "
                    "review what these sessions read and where it went",
                    read_sensitivity=level,
                    sensitivity_reason=why,
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
            WITH g AS (SELECT server, chain, chain[1:len(chain) - 1] AS prefix, sum(occurrences) AS occurrences,
                              sum(sessions) AS sessions FROM ru_chains GROUP BY server, chain),
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
            self.add(
                "chain",
                INFO,
                self.scoped(r["server"], text),
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

    def loops(self) -> None:
        rows = self.run(
            """
            SELECT server, tool, count(*) AS loops, sum(n) AS calls, max(n) AS longest, min(t0) AS first,
                   max(t1) AS last, list(session ORDER BY n DESC, session)[1:?] AS sessions
            FROM ru_loops WHERE n >= ? GROUP BY server, tool ORDER BY calls DESC""",
            [self.th.examples, self.th.loop_repeats],
        )
        for r in rows:
            self.add(
                "loop",
                WARNING,
                self.scoped(r["server"], r["tool"]),
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

    def fail_together(self) -> None:
        th = self.th
        rows = self.run(
            f"""
            WITH eb AS (SELECT DISTINCT server, tool, floor(time / 60) AS b FROM req WHERE {_ERROR}),
                 n AS (SELECT server, tool, count(*) AS buckets FROM eb GROUP BY 1, 2)
            SELECT a.server, a.tool AS a, b.tool AS b, count(*) AS together, na.buckets AS a_buckets,
                   nb.buckets AS b_buckets
            FROM eb a JOIN eb b ON a.b = b.b AND a.server IS NOT DISTINCT FROM b.server AND a.tool < b.tool
            JOIN n na ON na.tool = a.tool AND na.server IS NOT DISTINCT FROM a.server
            JOIN n nb ON nb.tool = b.tool AND nb.server IS NOT DISTINCT FROM b.server
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
                self.scoped(r["server"], f"{r['a']} + {r['b']}"),
                f"{r['a']} and {r['b']} fail in the same minutes ({j:.0%} overlap)",
                "they likely share a dependency: check it first when either fails",
                server=r["server"],
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
            f"(SELECT {rollup.label('method', 'target')} AS tool, * FROM ru_values WHERE method IN {_SERVED})",
            "server, tool",
        )
        rows = self.run(f"""
            WITH d AS (
                SELECT server, {rollup.label('method', 'target')} AS tool, calls, mean_ms, lat, total_s FROM (
                    SELECT server, method, target, count(*) AS calls, avg(duration_s) * 1000 AS mean_ms,
                           quantile_cont(duration_s, [0.5, 0.95, 0.99]) AS lat, sum(duration_s) AS total_s
                    FROM req WHERE method IN {_SERVED} GROUP BY 1, 2, 3)),
            p AS ({sizes})
            SELECT d.*, s.p95 AS p95_bytes, s.vmax AS max_bytes, t.p95 AS p95_tokens, t.vsum AS total_tokens
            FROM d LEFT JOIN p s ON (s.server, s.tool) IS NOT DISTINCT FROM (d.server, d.tool) AND s.measure = 'size'
                   LEFT JOIN p t ON (t.server, t.tool) IS NOT DISTINCT FROM (d.server, d.tool) AND t.measure = 'tokens'
            ORDER BY d.server, d.tool""")
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
                    f"SELECT count(*) AS n FROM req WHERE tool = ? AND {_SAME} AND duration_s * 1000 >= ?",
                    [r["tool"], r["server"], p99 * 0.5],
                )[0]["n"]
                self.add(
                    "heavy_tail",
                    WARNING,
                    self.scoped(r["server"], r["tool"]),
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
                    self.scoped(r["server"], r["tool"]),
                    f"{r['tool']} returns {r['p95_bytes'] / 1024:,.1f} KB at p95 (~{r['p95_tokens']:,.0f} tokens)",
                    "return less: paginate, filter fields, summarise; each call fills the agent's context",
                    server=r["server"],
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
                "most time spent in "
                + ", ".join(f"{self.scoped(r['server'], r['tool'])} ({r['total_s'] / total:.0%})" for r in by_time),
                "speeding these up helps agents most",
                tools=[
                    {
                        "tool": self.scoped(r["server"], r["tool"]),
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
        rows = self.run(
            f"""SELECT server, count(*) AS calls, count(*) FILTER (WHERE {_ERROR}) AS errors,
                       histogram(coalesce(error_category, 'unknown')) FILTER (WHERE {_ERROR}) AS cats
                FROM req WHERE time >= ? GROUP BY 1 ORDER BY 1""",
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
            self.add(
                "error_rate",
                sev,
                "overall" if len(self.servers) <= 1 else str(server),
                f"{rate:.1%} of calls to {server} failed in the last {th.recent / 60:.0f} min",
                "see the per-tool findings below; `mcplens report --since 1h --sort errors`",
                server=server,
                calls=int(row["calls"]),
                errors=int(row["errors"]),
                error_rate=_r(rate, 4),
                categories=dict(row["cats"] or {}),
                **self._error_breakdown(server, r0),
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

    def _error_breakdown(self, server: Any, since: float, until: float | None = None,
                         tools: list[str] | None = None) -> dict[str, Any]:
        """Errors by tool and by client, each split by category: where to look first."""
        cond = f"{_ERROR} AND {_SAME} AND time >= ?" + (" AND time < ?" if until is not None else "")
        params: list[Any] = [server, since] + ([until] if until is not None else [])
        if tools:
            cond += " AND tool IN (SELECT unnest(?))"
            params.append(tools)
        out: dict[str, Any] = {}
        for column, key in (("tool", "errors_by_tool"), ("coalesce(client_name, client)", "errors_by_client")):
            rows = self.run(
                f"""SELECT k, sum(n) AS total, list({{'c': cat, 'n': n}} ORDER BY n DESC, cat) AS cats FROM (
                        SELECT {column} AS k, coalesce(error_category, 'unknown') AS cat, count(*) AS n
                        FROM req WHERE {cond} GROUP BY 1, 2)
                    GROUP BY k ORDER BY total DESC, k LIMIT 10""",
                params,
            )
            out[key] = {str(r["k"]): {str(c["c"]): int(c["n"]) for c in r["cats"]} for r in rows}
        return out

    def _error_spikes(self) -> None:
        th = self.th
        label = rollup.label("method", "tool")
        rows = self.run(
            f"""
            WITH x AS (SELECT server, {label} AS tool, floor(bucket * ? / ?) AS bucket, category, calls, errors
                       FROM ru_buckets),
                 base AS (SELECT server, tool, sum(errors) / sum(calls) AS rate FROM x GROUP BY 1, 2),
                 b AS (SELECT server, tool, bucket, sum(calls) AS calls, sum(errors) AS errors,
                              list({{'k': category, 'v': errors}}) FILTER (WHERE category IS NOT NULL AND errors > 0)
                                  AS cats
                       FROM x GROUP BY 1, 2, 3)
            SELECT b.*, base.rate AS base_rate
            FROM b JOIN base ON base.server IS NOT DISTINCT FROM b.server AND base.tool = b.tool
            WHERE errors >= ? AND errors / calls >= ? AND errors / calls >= ? * base.rate
            ORDER BY b.server, bucket, b.tool""",
            [self.bucket_size, th.bucket, th.spike_min_errors, th.spike_min_rate, th.spike_over_baseline],
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
            self.add(
                "shared_failure",
                CRITICAL,
                self.scoped(server, f"{_t(start)}"),
                f"errors spiked in {len(tools)} tools of {server} at once ({top}): shared infrastructure, not one tool",
                "check what these tools share — database, auth service, network — before any tool's code",
                server=server,
                tools=dict(tools.most_common()),
                categories=dict(cats.most_common()),
                **self._error_breakdown(server, start, end, list(tools)),
                window=[_t(start), _t(end)],
                example_sessions=self.examples(
                    f"SELECT DISTINCT session FROM req WHERE {_ERROR} AND {_SAME} AND time >= ? AND time < ? "
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
            self.add(
                "tool_failure",
                WARNING,
                self.scoped(server, tool),
                f"{tool} alone failed {errors}/{calls} calls ({', '.join(cats) or 'unknown'}); other tools were fine",
                "the problem is in this tool or its own backend: start from its error messages "
                f"(`mcplens report --tool {tool}`)",
                server=server,
                errors=int(errors),
                calls=int(calls),
                base_error_rate=_r(rs[0]["base_rate"], 4),
                categories=dict(cats),
                **self._error_breakdown(server, start, end, [tool]),
                window=[_t(start), _t(end)],
            )

    def _restarts(self) -> None:
        """Restarts judged against the transport. A stdio server lives one process per conversation,
        so new instances are normal there; what is not is a crash: an instance that ended without a
        clean stop (no closing health record after its last request, or calls cut off by the server
        exiting) while it was serving, and another instance of the server came after it. Over HTTP or
        in-process, a burst of short-lived instances is a crash loop too."""
        th = self.th
        rows = self.run(
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
            self.add(
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

    def _resources(self) -> None:
        """CPU and memory of each server's processes (from their health records) against their call
        volume: one finding per server, the busiest and any leaking instance named in it."""
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
            GROUP BY 1, 2""",
            self.events_params,
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
            self.add(
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

    # ---- security --------------------------------------------------------------------------

    def security(self) -> None:
        th = self.th
        if self.reads and self.sends:
            rows = self.run(
                """
                WITH tot AS (SELECT server, sum(with_calls) AS n FROM ru_sessions GROUP BY server)
                SELECT e.server, read_tool, send_tool, sum(sessions) AS sessions, max(max_send_bytes) AS max_send_bytes,
                       min(first_read) AS first, max(last_send) AS last, any_value(tot.n) AS total,
                       list_sort(list_distinct(flatten(list(examples))))[1:?] AS examples
                FROM ru_exfil e LEFT JOIN tot ON tot.server IS NOT DISTINCT FROM e.server
                WHERE read_tool IN (SELECT unnest(?)) AND send_tool IN (SELECT unnest(?))
                GROUP BY 1, 2, 3 ORDER BY sessions DESC, read_tool, send_tool""",
                [th.examples, self.reads, self.sends],
            )
            for r in rows:
                share = r["sessions"] / (r["total"] or 1)  # of this server's sessions: baselines are per server
                level, why = self.classes.sensitivity(r["read_tool"])
                common = share >= th.exfil_common_share
                sev = INFO if common else {HIGH: CRITICAL, MEDIUM: WARNING}.get(level, INFO)
                self.add(
                    "exfiltration",
                    sev,
                    self.scoped(r["server"], f"{r['read_tool']} -> {r['send_tool']}"),
                    f"{r['sessions']} session(s) read with {r['read_tool']} ({level} sensitivity) then sent out "
                    f"with {r['send_tool']}" + (" (a common workflow here)" if common else ""),
                    "read-then-send is how injected instructions exfiltrate data: review these sessions; "
                    "require confirmation for the outbound tool or mark it in [insights.tools]",
                    server=r["server"],
                    sessions=int(r["sessions"]),
                    share_of_sessions=_r(share, 4),
                    read_sensitivity=level,
                    sensitivity_reason=why,
                    outbound_reason=self._outbound_reason(r["send_tool"]),
                    max_outbound_request_bytes=r["max_send_bytes"],
                    window=[_t(r["first"]), _t(r["last"])],
                    example_sessions=list(r["examples"]) if sev != INFO else [],
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

    def _outbound_reason(self, tool: str) -> str:
        c = self.classes
        if any(fnmatch.fnmatchcase(tool, p) for p in c.outbound):
            return "configured as outbound ([insights.tools] outbound)"
        if "openWorld" in c.hints.get(tool, ()):
            return "annotated openWorldHint: it reaches outside systems"
        return "its name says it sends data out"

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
        """Tool definitions that change. A server may show different tools to different clients (some
        only to clients that support sampling or elicitation), so the tool *set* is compared only
        within one client's view (client name + declared capabilities); a tool whose *definition*
        differs is a change between any two views."""
        import json

        rows = self.run(
            f"""
            WITH lists AS (
                SELECT server_name AS server, time, {_SESSION} AS session, instance_id,
                       coalesce(client_name, '?') AS client, client_capabilities AS caps,
                       response_tool_hashes::VARCHAR AS h
                FROM events WHERE method = 'tools/list' AND response_tool_hashes IS NOT NULL {self.events_where}),
            init AS (SELECT {_SESSION} AS session, any_value(client_capabilities) AS caps FROM events
                     WHERE method = 'initialize' AND client_capabilities IS NOT NULL {self.events_where} GROUP BY 1)
            SELECT l.server, l.client, coalesce(l.caps, init.caps) AS caps, h, min(time) AS first,
                   max(time) AS last, list(DISTINCT l.session) AS sessions, list(DISTINCT instance_id) AS instances
            FROM lists l LEFT JOIN init ON init.session IS NOT DISTINCT FROM l.session
            GROUP BY 1, 2, 3, 4 ORDER BY 1, first""",
            self.events_params * 2,
        )
        views: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
        per_server: dict[Any, dict[str, dict[str, Any]]] = defaultdict(dict)
        for r in rows:
            r["hashes"] = json.loads(r["h"])
            caps = tuple(r["caps"]) if r["caps"] is not None else None
            views[(r["server"], r["client"], caps)].append(r)
            merged = per_server[r["server"]].setdefault(r["h"], dict(r, sessions=[], instances=[]))
            merged["first"], merged["last"] = min(merged["first"], r["first"]), max(merged["last"], r["last"])
            merged["sessions"] = sorted({*merged["sessions"], *r["sessions"]}, key=str)
            merged["instances"] = sorted({*merged["instances"], *r["instances"]}, key=str)
        for server, by_hash in per_server.items():  # definitions: across every view of the server
            versions = sorted(by_hash.values(), key=lambda v: v["first"])
            seen: dict[str, tuple[str, dict[str, Any]]] = {}
            for v in versions:
                for tool, h in v["hashes"].items():
                    if tool in seen and seen[tool][0] != h:
                        self._drift_finding(server, seen[tool][1], v, changed=[tool], added=[], removed=[],
                                            view=None)
                    seen[tool] = (h, v)
        for (server, client, caps), versions in views.items():  # the tool set: within one view
            for old, new in zip(versions, versions[1:], strict=False):
                a, b = old["hashes"], new["hashes"]
                added, removed = sorted(b.keys() - a.keys()), sorted(a.keys() - b.keys())
                if added or removed:
                    self._drift_finding(server, old, new, changed=[], added=added, removed=removed,
                                        view={"client": client, "capabilities": list(caps) if caps else caps})
        # one finding per server and moment: a changed definition and a changed set seen together
        merged_findings: dict[str, Finding] = {}
        rest = []
        for f in self.findings:
            if f.detector != "tool_drift":
                rest.append(f)
                continue
            if f.subject in merged_findings:
                m = merged_findings[f.subject]
                for k in ("changed", "added", "removed"):
                    m.evidence[k] = sorted({*m.evidence[k], *f.evidence[k]})
                if RANK[f.severity] > RANK[m.severity]:
                    m.severity, m.title = f.severity, f.title
                continue
            merged_findings[f.subject] = f
        self.findings = rest + list(merged_findings.values())

    def _drift_finding(self, server: Any, old: dict[str, Any], new: dict[str, Any], *, changed: list[str],
                       added: list[str], removed: list[str], view: dict[str, Any] | None) -> None:
        live = sorted(set(old["sessions"]) & set(new["sessions"]), key=str)
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
            + (" under connected clients" if live else " in a running server" if same_instance
               else " between server versions")
            + f": {what}",
            "a tool whose description changes after approval can carry injected instructions "
            "(rug pull): diff the definitions and re-approve",
            server=server,
            changed=changed,
            added=added,
            removed=removed,
            client_view=view,
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
    # tools/call only: the tool's label is its name (cheaper than the view's CASE over every row)
    a.spikes("coalesce(target, method)", th.tool_spike_factor, th.tool_spike_min_calls, "tool_spike")
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
    """:func:`analyze` over a :class:`~mcplens.store.local.reader.LocalStore`, retried if a compaction races it."""
    for attempt in range(attempts):
        try:
            with store.reader(since=since) as run:
                return analyze(run, options, since=since, until=until, server=server)
        except Exception as e:  # noqa: BLE001
            if attempt + 1 >= attempts or type(e).__module__.split(".")[0] not in ("duckdb", "_duckdb"):
                raise
            time.sleep(0.05 * 2**attempt)
    raise AssertionError("unreachable")
