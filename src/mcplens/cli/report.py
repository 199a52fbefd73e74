"""``mcplens report`` (per-tool table) and ``mcplens health`` (the capture pipeline's own counters)."""

from __future__ import annotations

import argparse

from mcplens import safetext, views
from mcplens.cli.common import health_footer, window_of
from mcplens.cli.output import emit_json, fmt_bytes, fmt_int, fmt_ms, fmt_time, label, listing, progress, table
from mcplens.store.base import Store


def cmd_report(store: Store, args: argparse.Namespace) -> int:
    window = window_of(args)
    with progress("reading events"):
        rows = views.tools(store, window, server=args.server, tool=args.tool, sort=args.sort, limit=args.limit)
        health = views.health(store, window) if not args.json else []
    if args.json:
        emit_json(rows)
        return 0
    rows = safetext.safe(rows)
    if not rows:
        scope = " in this window" if window else ""
        print("no calls recorded" + scope + (" matching the filters" if args.server or args.tool else ""))
    else:
        multi = len({r["server"] for r in rows}) > 1
        headers = ["SERVER"] if multi else []
        headers += ["TOOL", "CALLS", "ERRORS", "ERR%", "P50 ms", "P95 ms", "P99 ms", "MEAN ms",
                    "BYTES p50", "p95", "max", "~TOKENS p50", "p95", "NOT OK"]
        lines = []
        for r in rows:
            not_ok = ", ".join(f"{s} {n:,}" for s, n in r["statuses"].items() if s != "ok") or "-"
            cells = [r["server"] or "-"] if multi else []
            cells += [label(r), fmt_int(r["calls"]), fmt_int(r["errors"]), f"{r['error_rate'] * 100:.1f}%",
                      fmt_ms(r["p50_ms"]), fmt_ms(r["p95_ms"]), fmt_ms(r["p99_ms"]), fmt_ms(r["mean_ms"]),
                      fmt_bytes(r["payload_p50_bytes"]), fmt_bytes(r["payload_p95_bytes"]),
                      fmt_bytes(r["payload_max_bytes"]), fmt_int(r["tokens_p50"]), fmt_int(r["tokens_p95"]),
                      not_ok]
            lines.append(cells)
        numbers = set(range(2 if multi else 1, len(headers) - 1))  # all but the names and NOT OK
        print(table(headers, lines, right=numbers))
    footer = health_footer(health)
    if footer:
        print(footer)
    return 0


def cmd_health(store: Store, args: argparse.Namespace) -> int:
    with progress("reading health records"):
        rows = views.health(store, window_of(args))
    rows = listing(rows, args.json, "no health records yet (each instrumented process writes one periodically)")
    if rows is None:
        return 0
    # EVENTS: audit events this process recorded (in the store); the pipeline's own "enqueued"
    # counts what it was handed, which for the proxy is every relayed message, replies included
    headers = ["INSTANCE", "SERVER", "PID", "LAST REPORT", "EVENTS", "WRITTEN", "DROPPED", "FAULTS",
               "WRITE FAILURES"]
    body = [[r["instance_id"] or "-", r["server"] or "-", fmt_int(r["pid"]), fmt_time(r["time"]),
             *(fmt_int(r[k]) for k in ("events", "written", "dropped", "faults", "write_failures"))]
            for r in rows]
    print(table(headers, body, right={2, 4, 5, 6, 7, 8}))
    footer = health_footer(rows)
    if footer:
        print(footer)
    return 0
