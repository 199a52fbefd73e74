"""The analysis's core: thresholds, one run's shared state (:class:`Analysis`), and :func:`insights`.

The detectors live in one module per area (usage.py, performance.py, health.py, security.py), each a
function of the :class:`Analysis`, one readable rule each, with thresholds in :class:`Thresholds`.
They read what the store hands them (:class:`~mcplens.store.source.AnalysisSource`): DuckDB SQL
over ``events`` and the rollup tables, never a file.

Detectors that follow sessions or count buckets (chains, loops, read-then-send, error spikes,
volume, restarts) read the rollup tables (``ru_*``, store/rollup.py): stored at compaction when the run
covers the whole store, else computed from the window's events. The others read ``req``, a
view of the request events; the time filters of the recent-window rules prune Parquet row groups.
"Now" is the window's end, else the newest event: insights over yesterday's data read as they
would have yesterday.
"""

from __future__ import annotations

import copy
import math
import threading
import time
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from mcplens.analysis.findings import Finding
from mcplens.classify import ToolClasses
from mcplens.store import sql
from mcplens.store.rollup import BUCKET, EXFIL_WINDOW
from mcplens.store.source import AnalysisSource

_ERROR = sql.ERROR
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
    bucket: float = BUCKET  # s: buckets for error spikes
    spike_min_errors: int = 5  # a tool "spikes" in a bucket with this many errors ...
    spike_min_rate: float = 0.5  # ... at this error rate or more ...
    spike_over_baseline: float = 3.0  # ... and this many times its own error rate over the window
    shared_min_tools: int = 2  # tools spiking in one bucket to call it shared infrastructure
    rate_limited_warning: int = 10  # refused calls per client
    auth_warning: int = 5  # auth failures / unauthorized attempts of one client within one auth_bucket
    auth_critical: int = 20
    auth_bucket: float = 600.0
    exfil_window: float = EXFIL_WINDOW  # s from a sensitive read to an outbound call
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


_SESSION = sql.SESSION_KEY
#: the requests of the relation ``{src}`` (``events``, or a part of it), in the detectors' names
_REQUESTS = f"""
SELECT time, server_name AS server, method, target,
       {sql.label('method', 'target')} AS tool, status, error_category,
       duration_s, response_size, response_tokens, request_size,
       {_SESSION} AS session, coalesce(client_id, client_name, 'unknown') AS client, client_name, redactions
FROM {{src}} WHERE kind = 'request' AND proxy_direction IS NULL {{where}}"""
_REQ = "CREATE OR REPLACE TEMP VIEW req AS " + _REQUESTS.replace("{src}", "events")

#: ``req`` over ``marks`` (the source's few events read one by one: refusals, auth failures, redactions)
_RARE = "CREATE OR REPLACE TEMP VIEW rare AS " + _REQUESTS.format(src="marks", where="")

#: the longest span of recent requests (s) an analysis copies into memory (:meth:`Analysis.req_from`):
#: a day of a busy server's requests would not fit a small machine's memory
RECENT_MAX = 6 * 3600.0

#: the requests that serve something (the performance rules' scope)
_SERVED = "('tools/call', 'resources/read', 'prompts/get')"


class _Once:
    """Whether something a run makes once is done, and made (shared by the run's copies)."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.made = False


class Analysis:
    """One run of every detector over one window."""

    def __init__(self, source: AnalysisSource, options: Options) -> None:
        self.run = run = source
        self.th = options.thresholds
        self.opts = options
        self.server = source.server
        bounds = source.bounds()
        self.events_where = "".join(f" AND {c}?" for c, _ in bounds)
        self.events_params = [v for _, v in bounds]
        run(_REQ.format(where=source.where_literal()))
        source.marks()  # the few events read one by one (tool lists, health records, refusals ...)
        run(_RARE)
        self.classes = self._classes()
        # the rollup tables (ru_*): stored at compaction, or computed from the window's events
        info = source.rollup_tables(self.classes.split, exfil_window=self.th.exfil_window, bucket=self.th.bucket,
                                    requests=0, min_loop=max(2, self.th.loop_repeats), examples=self.th.examples)
        self.reads, self.sends = info.reads, info.sends
        self.bucket_size = info.bucket
        self.from_rollups = info.stored
        row = run("SELECT coalesce(sum(served), 0) AS n, min(first) AS lo, max(last) AS hi, "
                  "list(DISTINCT server ORDER BY server) FILTER (WHERE server IS NOT NULL AND served > 0) AS servers "
                  "FROM ru_buckets")[0]
        self.n, self.lo = int(row["n"]), row["lo"]
        until = source.until
        self.now = until if until is not None else (row["hi"] + 1e-6 if row["hi"] is not None else time.time())
        # a proxy learns the server's name from the handshake reply: what came before it has none
        self.servers = list(row["servers"] or ())
        self.findings: list[Finding] = []
        # the recent windows' requests, read by a dozen queries (error rate, spikes, their evidence): once
        # from the batches' Parquet into memory (:meth:`copy_recent`), not a Parquet scan each
        span = max(self.th.recent, *(int(w) * 60 for w in self.th.spike_windows))
        self.recent_from = self.now - span if span <= RECENT_MAX else math.inf
        self._recent = _Once()

    def copy_recent(self) -> None:
        """Make ``recent_req``, the requests :meth:`req_from` reads from memory; until it is made (or
        has failed) that waits. The first of a run's tasks, so a detector on another source waits
        at most for it."""
        try:
            if self.recent_from != math.inf:
                # from the part of ``events`` that holds them: the batches of the last hours, not all
                # (a view over all opens every batch file to find the row groups to read)
                where = f"{self.run.where_literal()} AND time >= {self.recent_from!r}"
                self.run("CREATE OR REPLACE TEMP TABLE recent_req AS "
                         + _REQUESTS.format(src=self.run.events_from(self.recent_from), where=where))
                self._recent.made = True
        finally:
            self._recent.done.set()

    def req_from(self, since: float) -> str:
        """The relation of ``req`` to read for requests from ``since`` on: the in-memory copy of the
        recent windows when it holds them all (made by :meth:`copy_recent`), else ``req`` itself."""
        if since < self.recent_from or not self._recent.done.wait() or not self._recent.made:
            return "req"
        return "recent_req"

    def on(self, source: AnalysisSource) -> Analysis:
        """This run over another source of the same snapshot (a fork), with findings of its own."""
        other = copy.copy(self)
        other.run, other.findings = source, []
        return other

    # ---- helpers -------------------------------------------------------------------------------

    def add(self, detector: str, severity: str, subject: str, title: str, action: str, **evidence: Any) -> None:
        self.findings.append(Finding(detector, severity, subject, title, evidence, action))

    def scoped(self, server: Any, subject: str) -> str:
        """A subject within its server: every baseline is per server, so with several servers in the
        store the same tool name on two servers is two subjects (``server/subject``)."""
        return subject if len(self.servers) <= 1 else f"{server}/{subject}"

    def _classes(self) -> ToolClasses:
        hints = sql.tool_hints(self.run, "marks", self.events_where, self.events_params)
        return replace(self.opts.classes, hints={**hints, **self.opts.classes.hints})

    def examples(self, query: str, params: list[Any]) -> list[str]:
        return [r["session"] for r in self.run(query + f" LIMIT {int(self.th.examples)}", params)]
