"""``mcplens insights`` (findings with evidence and what to do) and ``mcplens watch`` (alert rules over them)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

from mcplens import safetext, views
from mcplens.cli.common import report_bad_files, window_of
from mcplens.cli.output import SafeFormatter, emit_json, fmt_time, progress, trim
from mcplens.store.base import Store

_SEV_MARK = {"critical": "CRIT", "warning": "WARN", "info": "info"}


def _evidence_line(evidence: dict[str, Any]) -> str:
    parts = []
    for k, v in evidence.items():
        if v is None or v == [] or v == {}:
            continue
        text = json.dumps(v, default=str, ensure_ascii=False) if isinstance(v, dict | list) else str(v)
        parts.append(f"{k}={trim(text, 120)}")
    return "; ".join(parts)


def print_findings(findings: list[dict[str, Any]]) -> None:
    """Findings as :func:`mcplens.views.insights` gives them (``Finding.to_dict()``), already escaped."""
    if not findings:
        print("no findings")
        return
    for f in findings:
        print(f"{_SEV_MARK[f['severity']]}  [{f['area']}/{f['detector']}] {f['title']}")
        ev_line = _evidence_line(f["evidence"])
        if ev_line:
            print(f"      evidence: {ev_line}")
        if f["action"]:
            print(f"      action: {f['action']}")
    counts = {s: sum(1 for f in findings if f["severity"] == s) for s in ("critical", "warning", "info")}
    print(f"{len(findings)} finding(s): " + ", ".join(f"{n} {s}" for s, n in counts.items()))


def cmd_insights(store: Store, args: argparse.Namespace) -> int:
    from mcplens.analysis import load_options

    window = window_of(args)
    options = load_options(args.config)
    with progress("analysing events"):
        found = views.insights(store, window, server=args.server, options=options, min_severity=args.min_severity,
                               limit=args.limit)
    if args.json:
        emit_json(found)
    else:
        print_findings(safetext.safe(found))
    return 0


def alert_state_path(home: Path) -> Path:
    return home / "alerts" / "state.json"


def cmd_watch(store: Store, args: argparse.Namespace) -> int:
    from mcplens.alerts import Watcher, load_config

    config = load_config(args.config)
    if args.interval is not None:
        config = type(config)(config.rules, args.interval, config.webhook, config.options)
    if not logging.getLogger().handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(SafeFormatter("%(asctime)s %(levelname)s %(message)s"))
        logging.basicConfig(level=logging.INFO, handlers=[handler])
    # episodes and cool-downs live beside the data, so a restart or `--once` does not re-fire them
    watcher = Watcher(store, config, state_path=alert_state_path(args.home_dir))
    while True:
        for a in watcher.evaluate():
            if args.json:
                print(safetext.dumps(a.payload()), flush=True)
            else:
                print(f"{fmt_time(a.at)}  {a.state:<8} {safetext.text(a.rule)}: {safetext.text(a.finding.title)}",
                      flush=True)
        report_bad_files(store)
        if args.once:
            return 0
        time.sleep(config.interval)
