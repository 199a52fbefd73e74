"""Alert rules over the insights, evaluated continuously by ``mcplens watch``.

A rules file (TOML)::

    [alerts]
    interval = 30                       # seconds between evaluations
    webhook = "https://hooks.example/x" # JSON POST per alert (optional); the log always gets it
    cooldown = "15m"                    # default: after an episode ends, how long before it may fire again

    [[alerts.rules]]
    name = "error rate"
    detector = "error_rate"             # a detector name (see `mcplens insights --json`), or "security"
    threshold = 0.05                    # the detector's main threshold (see THRESHOLD_FIELDS)
    min_severity = "warning"            # info | warning | critical (default warning)
    cooldown = "10m"

    [[alerts.rules]]
    name = "slow search"
    detector = "p99_latency"            # p99 of a tool (glob) over the recent window
    tool = "search_*"
    threshold = 2000                    # ms

    [insights]                          # any insights threshold, e.g. recent = 1800
    recent = 3600

An alert fires once per *episode*: when a finding (detector + subject: a client, a tool ...)
appears; it stays quiet while the finding persists and is resolved when the finding goes away.
After a resolve, the same alert fires again only once its cool-down has passed. With a
``state_path`` (``mcplens watch`` keeps it in the data directory) episodes and cool-downs survive
a restart, so ``watch --once`` from cron fires an episode once and honours the cool-down.
"""

from __future__ import annotations

import calendar
import fnmatch
import json
import logging
import os
import time
import tomllib
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final

from mcplens.analysis.core import Options, Thresholds, analyze, load_options
from mcplens.analysis.findings import AREAS, RANK, SEVERITIES, WARNING, Finding
from mcplens.analysis.performance import tool_p99
from mcplens.store.base import Store, TimeWindow, parse_time
from mcplens.store.source import AnalysisSource

log = logging.getLogger("mcplens.alerts")

#: a rule's ``threshold`` sets this insights threshold for its detector
THRESHOLD_FIELDS: Final = {
    "error_rate": "error_rate_warning",
    "client_spike": "client_spike_factor",
    "tool_spike": "tool_spike_factor",
    "data_access_burst": "tool_spike_factor",
    "loop": "loop_repeats",
    "heavy_tail": "heavy_tail_p99_ms",
    "payload_bloat": "payload_p95_bytes",
    "auth_failures": "auth_warning",
    "rate_limited": "rate_limited_warning",
}
SECURITY: Final = tuple(d for d, area in AREAS.items() if area == "security")


def _seconds(value: Any, what: str) -> float:
    if isinstance(value, int | float):
        return float(value)
    try:
        return 0.0 - parse_time(str(value), now=0.0)
    except ValueError:
        raise ValueError(f"{what}: cannot read {value!r} as a duration (30s, 15m, 2h)") from None


@dataclass(frozen=True)
class Rule:
    name: str
    detector: str  # a detector, "security", or "p99_latency"
    threshold: float | None = None
    min_severity: str = WARNING
    cooldown: float = 900.0
    tool: str = "*"  # p99_latency only

    def detectors(self) -> tuple[str, ...]:
        return SECURITY if self.detector == "security" else (self.detector,)

    def matches(self, f: Finding) -> bool:
        return f.detector in self.detectors() and RANK[f.severity] >= RANK[self.min_severity]


@dataclass(frozen=True)
class AlertConfig:
    rules: tuple[Rule, ...]
    interval: float = 30.0
    webhook: str | None = None
    options: Options = field(default_factory=Options)

    def effective_options(self) -> Options:
        th = self.options.thresholds
        for r in self.rules:
            fname = THRESHOLD_FIELDS.get(r.detector)
            if fname and r.threshold is not None:
                th = replace(th, **{fname: type(getattr(th, fname))(r.threshold)})
        return replace(self.options, thresholds=th)


def load_config(path: Path) -> AlertConfig:
    with open(path, "rb") as f:
        data = tomllib.load(f)
    section = data.get("alerts") or {}
    default_cd = _seconds(section.get("cooldown", 900), "alerts.cooldown")
    known = {*AREAS, "security", "p99_latency"}
    rules = []
    for i, r in enumerate(section.get("rules") or ()):
        detector = r.get("detector")
        if detector not in known:
            raise ValueError(
                f"alerts.rules[{i}]: detector {detector!r} unknown; choose from {', '.join(sorted(known))}"
            )
        sev = r.get("min_severity", WARNING)
        if sev not in SEVERITIES:
            raise ValueError(f"alerts.rules[{i}]: min_severity {sev!r} is not one of {', '.join(SEVERITIES)}")
        if detector == "p99_latency" and r.get("threshold") is None:
            raise ValueError(f"alerts.rules[{i}]: p99_latency needs threshold (ms)")
        rules.append(
            Rule(
                name=str(r.get("name") or detector),
                detector=detector,
                threshold=None if r.get("threshold") is None else float(r["threshold"]),
                min_severity=sev,
                cooldown=_seconds(r.get("cooldown", default_cd), f"alerts.rules[{i}].cooldown"),
                tool=str(r.get("tool", "*")),
            )
        )
    if not rules:
        raise ValueError(f"{path}: no [[alerts.rules]]")
    return AlertConfig(
        tuple(rules),
        interval=_seconds(section.get("interval", 30), "alerts.interval"),
        webhook=section.get("webhook"),
        options=load_options(path),
    )


def p99_findings(source: AnalysisSource, rule: Rule, now: float, recent: float) -> list[Finding]:
    rows = tool_p99(source, now - recent)
    out = []
    for r in rows:
        if fnmatch.fnmatchcase(r["tool"], rule.tool) and r["p99"] is not None and r["p99"] >= (rule.threshold or 0):
            out.append(
                Finding(
                    "p99_latency",
                    WARNING,
                    r["tool"],
                    f"{r['tool']} p99 {r['p99']:,.0f} ms over {rule.threshold:,.0f} ms",
                    {"p99_ms": round(r["p99"], 1), "calls": int(r["calls"]), "threshold_ms": rule.threshold},
                    "see `mcplens report --sort p99`",
                )
            )
    return out


def _stale(f: Finding, cutoff: float) -> bool:
    """A finding whose evidence window ended before the recent window: its episode is over."""
    window = f.evidence.get("window")
    if not (isinstance(window, list) and len(window) == 2 and window[1]):
        return False
    return calendar.timegm(time.strptime(window[1], "%Y-%m-%dT%H:%M:%SZ")) < cutoff


@dataclass
class _State:
    active: bool = False
    last_fired: float = float("-inf")


@dataclass
class Alert:
    rule: str
    state: str  # "firing" | "resolved"
    finding: Finding
    at: float

    def payload(self) -> dict[str, Any]:
        return {
            "alert": self.rule,
            "state": self.state,
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.at)),
            **self.finding.to_dict(),
        }


class Watcher:
    """Evaluates the rules over the store; remembers episodes between evaluations."""

    def __init__(
        self,
        store: Store,
        config: AlertConfig,
        *,
        clock: Callable[[], float] = time.time,
        post: Callable[[str, dict[str, Any]], None] | None = None,
        state_path: Path | None = None,
    ) -> None:
        self.store = store
        self.config = config
        self.options = config.effective_options()
        self.clock = clock
        self._post = post or post_json
        self._states: dict[tuple[str, str], _State] = {}
        self._last: dict[tuple[str, str], Finding] = {}
        self.state_path = state_path
        if state_path is not None:
            self._load_state(state_path)

    def _load_state(self, path: Path) -> None:
        """Episodes from an earlier run; an unreadable file is logged and treated as none."""
        try:
            data = json.loads(path.read_text("utf-8"))
            for item in data.get("alerts", []):
                key = (str(item["rule"]), str(item["key"]))
                self._states[key] = _State(bool(item["active"]), float(item["last_fired"]))
                if item.get("finding"):
                    f = {k: v for k, v in item["finding"].items() if k != "area"}
                    self._last[key] = Finding(**f)
        except FileNotFoundError:
            return
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            log.warning("mcplens watch: ignoring unreadable alert state %s: %s", path, e)

    def _save_state(self, path: Path) -> None:
        items = [
            {"rule": k[0], "key": k[1], "active": st.active, "last_fired": st.last_fired,
             "finding": self._last[k].to_dict() if k in self._last else None}
            for k, st in self._states.items()
            if st.active or st.last_fired > float("-inf")
        ]
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps({"version": 1, "alerts": items}, default=str), "utf-8")
            os.replace(tmp, path)  # atomic: a reader never sees half a file
        except OSError as e:
            log.error("mcplens watch: cannot save alert state to %s: %s", path, e)

    def findings(self, now: float) -> dict[tuple[str, str], Finding]:
        th: Thresholds = self.options.thresholds
        since = now - th.recent - th.baseline
        out: dict[tuple[str, str], Finding] = {}
        with self.store.analysis_source(TimeWindow(since, now)) as source:
            found = analyze(source, self.options)
            for rule in self.config.rules:
                if rule.detector == "p99_latency":
                    rows = p99_findings(source, rule, now, th.recent) if found else []
                else:
                    rows = [f for f in found if rule.matches(f) and not _stale(f, now - th.recent)]
                for f in rows:
                    out[(rule.name, f.key)] = f
        return out

    def evaluate(self) -> list[Alert]:
        now = self.clock()
        current = self.findings(now)
        alerts: list[Alert] = []
        for key, f in current.items():
            st = self._states.setdefault(key, _State())
            if st.active:
                continue
            st.active = True
            rule = next(r for r in self.config.rules if r.name == key[0])
            if now - st.last_fired >= rule.cooldown:
                st.last_fired = now
                alerts.append(Alert(key[0], "firing", f, now))
        for key, st in self._states.items():
            if st.active and key not in current:
                st.active = False
                alerts.append(Alert(key[0], "resolved", self._last[key], now))
        self._last.update(current)
        if self.state_path is not None:  # before notifying: a crash mid-webhook must not re-fire
            self._save_state(self.state_path)
        for a in alerts:
            self.notify(a)
        return alerts

    def notify(self, alert: Alert) -> None:
        f = alert.finding
        level = logging.INFO if alert.state == "resolved" else logging.WARNING
        log.log(level, "mcplens alert %s [%s] %s: %s", alert.state, f.severity, alert.rule, f.title)
        if self.config.webhook:
            try:
                self._post(self.config.webhook, alert.payload())
            except Exception as e:  # noqa: BLE001 - a dead webhook must not stop the watch
                log.error("mcplens alert webhook %s failed: %s", self.config.webhook, e)


def post_json(url: str, body: dict[str, Any], timeout: float = 5.0) -> None:
    data = json.dumps(body, default=str).encode()
    req = urllib.request.Request(
        url, data=data, method="POST", headers={"Content-Type": "application/json", "User-Agent": "mcplens-watch"}
    )
    with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - the operator's own URL
        resp.read()
