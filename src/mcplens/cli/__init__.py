"""``mcplens``: read what the capture side recorded.

Exit codes: 0 success (a data directory with nothing recorded yet is a note on stderr, not a
failure, so scripts get ``[]`` from ``--json``), 1 the data could not be read, 2 a bad command
line (a ``--home`` or ``$MCPLENS_HOME`` that does not exist included), 130 interrupted (Ctrl-C).

Every string that came from an event goes through :mod:`mcplens.safetext` before it is printed.
A file the store cannot read is named on stderr and left out; ``mcplens check`` lists and moves
such files aside.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from mcplens import safetext
from mcplens.config import default_home
from mcplens.store import open_store
from mcplens.store.base import SORTS, Store, TimeWindow

#: seconds of look-back for ``tail``: an event is stamped with its *start* time but written when
#: it ends, so a slow call appears after faster later ones
TAIL_LOOKBACK = 900.0
TAIL_INTERVAL = 0.5


class UsageError(Exception):
    """A bad value on the command line that argparse cannot check by itself."""


# ---- progress -------------------------------------------------------------------------------


@contextlib.contextmanager
def progress(label: str, *, delay: float = 1.0) -> Iterator[None]:
    """A spinner on stderr for slow work, only on a terminal and only once it has taken ``delay`` s."""
    if not (hasattr(sys.stderr, "isatty") and sys.stderr.isatty()):
        yield
        return
    done = threading.Event()
    start = time.monotonic()

    def spin() -> None:
        if done.wait(delay):
            return
        for ch in itertools.cycle("|/-\\"):
            sys.stderr.write(f"\r{ch} {label} {time.monotonic() - start:.1f}s")
            sys.stderr.flush()
            if done.wait(0.1):
                sys.stderr.write("\r\x1b[K")
                sys.stderr.flush()
                return

    t = threading.Thread(target=spin, daemon=True)
    t.start()
    try:
        yield
    finally:
        done.set()
        t.join()


# ---- formatting -----------------------------------------------------------------------------


def fmt_ms(v: float | None) -> str:
    if v is None:
        return "-"
    if v < 10:
        return f"{v:.2f}"
    if v < 100:
        return f"{v:.1f}"
    return f"{v:,.0f}"


def fmt_bytes(v: float | None) -> str:
    if v is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if abs(v) < 1024 or unit == "GB":
            return f"{v:.0f} B" if unit == "B" else f"{v:.1f} {unit}"
        v /= 1024
    raise AssertionError("unreachable")


def fmt_int(v: float | None) -> str:
    return "-" if v is None else f"{v:,.0f}"


def fmt_time(ts: float | None, *, millis: bool = False) -> str:
    if ts is None:
        return "-"
    text = time.strftime("%Y-%m-%d %H:%M:%S" if not millis else "%H:%M:%S", time.localtime(ts))
    return f"{text}.{int(ts * 1000) % 1000:03d}" if millis else text


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: set[int]) -> str:
    """Aligned plain-text columns; ``right`` holds the indexes of numeric columns."""
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        out = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))]
        return "  ".join(out).rstrip()

    return "\n".join([line(headers), *(line(r) for r in rows)])


def label(row: dict[str, Any]) -> str:
    """A tool call shows as the tool; anything else as ``method target``, like the OTel span name."""
    if row.get("target") is None:
        return row.get("method") or "?"
    return row["target"] if row.get("method") == "tools/call" else f"{row['method']} {row['target']}"


def compact_event(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if v is not None}


def emit_json(obj: Any) -> None:
    print(safetext.dumps(obj, indent=1))


def count_arg(text: str) -> int:
    """``-n``: a count, zero or more (argparse reports a bad one with the subcommand's usage)."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"{n} is negative; give 0 or more")
    return n


# ---- commands -------------------------------------------------------------------------------


def window_of(args: argparse.Namespace) -> TimeWindow | None:
    try:
        return TimeWindow.parse(args.since, args.until)
    except ValueError as e:
        raise UsageError(str(e)) from None


def health_footer(health: list[dict[str, Any]]) -> str | None:
    dropped = sum(h["dropped"] or 0 for h in health)
    faults = sum(h["faults"] or 0 for h in health)
    failed = sum(h["write_failures"] or 0 for h in health)
    if not (dropped or faults or failed):
        return None
    return (
        f"monitoring itself lost data: {dropped:,} dropped (queue full), {faults:,} faults, "
        f"{failed:,} write failures across {len(health)} instance(s); see `mcplens health`"
    )


def cmd_report(store: Store, args: argparse.Namespace) -> int:
    window = window_of(args)
    with progress("reading events"):
        rows = store.tool_table(window, args.server, args.tool, args.sort)
        health = store.health(window) if not args.json else []
    if args.limit is not None:
        rows = rows[: args.limit]
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


def tail_line(e: dict[str, Any]) -> str:
    ms = None if e.get("duration_s") is None else e["duration_s"] * 1000
    sid = (e.get("session_id") or e.get("instance_id") or "-")[:8]
    return (
        f"{fmt_time(e.get('time'), millis=True)}  {(e.get('server_name') or '-')[:16]:<16}  "
        f"{(e.get('method') or '-'):<20}  {(e.get('target') or '-')[:28]:<28}  {(e.get('status') or '-'):<13}  "
        f"{fmt_ms(ms):>8} ms  {fmt_bytes(e.get('response_size')):>9}  {sid}"
    )


def cmd_tail(store: Store, args: argparse.Namespace) -> int:
    def show(events: list[dict[str, Any]]) -> None:
        for e in events:
            line = safetext.dumps(compact_event(e)) if args.json else tail_line(safetext.safe(e))
            print(line, flush=True)
        report_bad_files(store)

    n = args.limit
    server = args.server
    if args.once:  # the filter goes into the query: the newest n *matching* events
        show(store.events_since(0.0, n, server=server) if n else [])
        return 0
    # One listing decides both what is printed first and what counts as seen, so no event falls
    # between the two or shows twice.
    recent = store.events_since(time.time() - TAIL_LOOKBACK, server=server)
    last = recent[len(recent) - n :] if len(recent) >= n else store.events_since(0.0, n, server=server)
    show(last if n else [])
    seen = {e["event_id"]: e["time"] for e in (*recent, *last)}
    try:
        while True:
            time.sleep(TAIL_INTERVAL)
            cutoff = time.time() - TAIL_LOOKBACK
            new = [e for e in store.events_since(cutoff, server=server) if e["event_id"] not in seen]
            seen = {k: t for k, t in seen.items() if t > cutoff}
            seen.update((e["event_id"], e["time"]) for e in new)
            show(new)
    except KeyboardInterrupt:
        return 0


def short(session_id: str | None) -> str:
    return "-" if session_id is None else session_id[:12]


def cmd_sessions(store: Store, args: argparse.Namespace) -> int:
    if args.id is not None:
        return session_detail(store, args)
    window = window_of(args)
    with progress("reading sessions"):
        rows = store.sessions(window, args.server, args.limit)
    if args.json:
        emit_json(rows)
        return 0
    rows = safetext.safe(rows)
    if not rows:
        print("no sessions recorded")
        return 0
    body = [
        [short(r["session_id"]), " ".join(x for x in (r["client_name"], r["client_version"]) if x) or "-",
         r["server"] or "-", fmt_time(r["first_seen"]), fmt_time(r["last_seen"]), fmt_int(r["calls"]),
         fmt_int(r["errors"]), _trim(", ".join(r["tools"]) or "-", 60)]
        for r in rows
    ]
    headers = ["SESSION", "CLIENT", "SERVER", "FIRST SEEN", "LAST SEEN", "CALLS", "ERRORS", "TOOLS"]
    print(table(headers, body, right={5, 6}))
    return 0


def _trim(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def session_detail(store: Store, args: argparse.Namespace) -> int:
    with progress("reading session"):
        events = store.session_events(args.id)
    if not args.json:
        events = safetext.safe(events)
    matched = sorted({e["session"] for e in events})
    if not matched:
        print(f"mcplens: no session matching {safetext.text(repr(args.id))}", file=sys.stderr)
        return 1
    if len(matched) > 1:
        listed = ", ".join(safetext.safe(matched[:5])) + (", ..." if len(matched) > 5 else "")
        print(f"mcplens: {safetext.text(repr(args.id))} matches {len(matched)} sessions ({listed}); "
              "give more of the id", file=sys.stderr)
        return 1
    if args.json:
        emit_json([compact_event(e) for e in events])
        return 0
    print(f"session {matched[0]}: {len(events)} events")
    body = [
        [fmt_time(e["time"], millis=True), _direction(e), e["method"] or "-", e["target"] or "-",
         e["status"] or "-", fmt_ms(None if e["duration_s"] is None else e["duration_s"] * 1000),
         fmt_bytes(e["response_size"]), e["error_type"] or ""]
        for e in events
    ]
    print(table(["TIME", "DIR", "METHOD", "TARGET", "STATUS", "ms", "BYTES", "ERROR"], body, right={5, 6}))
    if any(e.get("proxy_direction") == SERVER_TO_CLIENT for e in events):
        print("DIR: -> a request from the client to the server; <- one the server sent the client "
              "(sampling, elicitation, roots)")
    return 0


#: the proxy marks requests the server sent to the client (sampling, elicitation ...) with this
SERVER_TO_CLIENT = "server_to_client"


def _direction(e: dict[str, Any]) -> str:
    return "<-" if e.get("proxy_direction") == SERVER_TO_CLIENT else "->"


def cmd_compact(store: Store, args: argparse.Namespace) -> int:
    with progress("compacting"):
        result = store.compact()
    if args.json:
        print(json.dumps({**vars(result), "batches": list(result.batches)}))
    elif result.busy:
        print("another compaction is running; nothing done")
    elif not result.batches:
        print("nothing to compact" + (f" (cleaned up {result.removed} leftover file(s))" if result.removed else "")
              + (f"; rolled up {result.rolled_up} earlier batch(es) for the insights" if result.rolled_up else ""))
    else:
        names = ", ".join(f"{b}.parquet" for b in result.batches)
        print(f"compacted {result.segments} segment(s), {result.events:,} events, into {names}"
              + (f"; cleaned up {result.removed} leftover file(s)" if result.removed else "")
              + (f"; rolled up {result.rolled_up} earlier batch(es) for the insights" if result.rolled_up else ""))
    return 0


def cmd_health(store: Store, args: argparse.Namespace) -> int:
    with progress("reading health records"):
        rows = store.health(window_of(args))
    if args.json:
        emit_json(rows)
        return 0
    rows = safetext.safe(rows)
    if not rows:
        print("no health records yet (each instrumented process writes one periodically)")
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


_SEV_MARK = {"critical": "CRIT", "warning": "WARN", "info": "info"}


def _evidence_line(evidence: dict[str, Any]) -> str:
    parts = []
    for k, v in evidence.items():
        if v is None or v == [] or v == {}:
            continue
        text = json.dumps(v, default=str, ensure_ascii=False) if isinstance(v, dict | list) else str(v)
        parts.append(f"{k}={_trim(text, 120)}")
    return "; ".join(parts)


def print_findings(findings: list[Any]) -> None:
    if not findings:
        print("no findings")
        return
    for f in findings:
        print(f"{_SEV_MARK[f.severity]}  [{f.area}/{f.detector}] {f.title}")
        ev_line = _evidence_line(f.evidence)
        if ev_line:
            print(f"      evidence: {ev_line}")
        if f.action:
            print(f"      action: {f.action}")
    counts = {s: sum(1 for f in findings if f.severity == s) for s in ("critical", "warning", "info")}
    print(f"{len(findings)} finding(s): " + ", ".join(f"{n} {s}" for s, n in counts.items()))


def cmd_insights(store: Store, args: argparse.Namespace) -> int:
    from mcplens.analysis.engine import insights, load_options
    from mcplens.analysis.findings import RANK

    window = window_of(args)
    options = load_options(args.config)
    with progress("analysing events"):
        found = insights(store, options, since=window.since if window else None,
                         until=window.until if window else None, server=args.server)
    found = [f for f in found if RANK[f.severity] >= RANK[args.min_severity]]
    if args.limit is not None:
        found = found[: args.limit]
    if args.json:
        emit_json([f.to_dict() for f in found])
    else:
        print_findings(safetext.safe(found))
    return 0


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


class SafeFormatter(logging.Formatter):
    """Log lines carry finding titles (tool and client names): escaped like everything printed."""

    def format(self, record: Any) -> str:
        return "\n".join(safetext.text(line) for line in super().format(record).split("\n"))


def alert_state_path(home: Path) -> Path:
    return home / "alerts" / "state.json"


def report_bad_files(store: Store) -> None:
    """Name each file the store left out as unreadable, once per file, on stderr."""
    bad = getattr(store, "bad", None)
    if not bad:
        return
    told = getattr(store, "_told", set())
    for path, why in bad.items():
        if path not in told:
            print(f"mcplens: skipped unreadable file {safetext.text(str(path))}: {safetext.text(why)} "
                  "(its events are left out; `mcplens check --fix` moves it aside)", file=sys.stderr)
            told.add(path)
    store._told = told  # type: ignore[attr-defined]


def cmd_check(store: Store, args: argparse.Namespace) -> int:
    from mcplens.store.local.check import check

    with progress("checking the data directory"):
        result = check(args.home_dir, fix=args.fix)
    if args.json:
        emit_json(result.to_dict())
        return 1 if result.problems and not args.fix else 0
    for pr in result.problems:
        moved = f" -> moved to {safetext.text(str(pr.moved_to))}" if pr.moved_to else ""
        print(f"BAD  {safetext.text(str(pr.path))}: {safetext.text(pr.why)}{moved}")
    print(f"checked {result.files:,} file(s) under {safetext.text(str(args.home_dir))}: "
          + (f"{len(result.problems)} unreadable" if result.problems else "all readable"))
    if result.problems and not args.fix:
        print("run `mcplens check --fix` to move them into "
              f"{safetext.text(str(result.quarantine))} (nothing is deleted)")
        return 1
    return 0


def cmd_disclose(args: argparse.Namespace) -> int:
    from mcplens.config import from_env
    from mcplens.disclose import render

    overrides = {"mode": args.mode, "opt_in_env": args.opt_in_env, "config": args.config, "home": args.home}
    print(render(from_env().with_overrides(**overrides), server=args.server_name), end="")
    return 0


# ---- entry point ----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--home", type=Path, help="data directory (default: $MCPLENS_HOME or the platform's)")
    common.add_argument("--json", action="store_true", help="machine-readable output")
    win = argparse.ArgumentParser(add_help=False)
    win.add_argument("--since", help="15m, 2h, 3d, 1w ago, or an ISO timestamp")
    win.add_argument("--until", help="same forms as --since")
    win.add_argument("--server", help="only this server (by name)")

    parser = argparse.ArgumentParser(prog="mcplens", description="Report on what your MCP servers did.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("report", parents=[common, win], help="per-tool calls, errors, latency, payload")
    p.add_argument("--sort", choices=SORTS, default="calls", help="column to sort by, largest first")
    p.add_argument("--tool", help="only this tool/prompt/resource name, or a method such as tools/list "
                                  "(glob patterns allowed)")
    p.add_argument("-n", "--limit", type=count_arg, help="at most this many rows, after sorting (default all)")
    p.set_defaults(func=cmd_report)

    # -n is --limit in every command: at most N rows/events (tail: the N newest shown first)
    p = sub.add_parser("tail", parents=[common], help="stream events as they arrive")
    p.add_argument("-n", "--limit", "--lines", dest="limit", type=count_arg, default=10,
                   help="at most this many recent events shown first (default 10; --lines is the old spelling)")
    p.add_argument("--once", action="store_true", help="print the recent events and exit")
    p.add_argument("--server", help="only this server (by name)")
    p.set_defaults(func=cmd_tail)

    p = sub.add_parser("sessions", parents=[common, win], help="list sessions, or show one session's events")
    p.add_argument("id", nargs="?", help="a session id or a unique prefix of one")
    p.add_argument("-n", "--limit", type=count_arg, default=50, help="at most this many sessions (default 50)")
    p.set_defaults(func=cmd_sessions)

    p = sub.add_parser("compact", parents=[common], help="fold finished segments into Parquet")
    p.set_defaults(func=cmd_compact)

    p = sub.add_parser("disclose", help="print the README section saying what this configuration collects")
    p.add_argument("--mode", choices=("local", "packaged"), help="as instrument(mode=...) (default: $MCPLENS_MODE)")
    p.add_argument("--opt-in-env", help="packaged mode: the server's own opt-in variable")
    p.add_argument("--config", type=Path, help="a TOML file with a [privacy] table")
    p.add_argument("--server-name", default="This server", help="the server's name, as the text should say it")
    p.add_argument("--home", type=Path, help="data directory the text names (default: $MCPLENS_HOME or the platform's)")
    p.set_defaults(func=cmd_disclose, standalone=True)

    from mcplens.proxy import add_parser as add_proxy_parser

    add_proxy_parser(sub)

    from mcplens.dashboard import add_parser as add_dashboard_parser

    add_dashboard_parser(sub)

    p = sub.add_parser("health", parents=[common], help="the capture pipeline's own counters per process")
    p.add_argument("--since", help="only processes that reported since (15m, 2h, ISO ...)")
    p.add_argument("--until", help="same forms as --since")
    p.set_defaults(func=cmd_health)

    p = sub.add_parser("insights", parents=[common, win],
                       help="what is wrong and what to do: usage, performance, health, security findings")
    p.add_argument("--config", type=Path, help="TOML file whose [insights] table overrides thresholds")
    p.add_argument("--min-severity", choices=("info", "warning", "critical"), default="info",
                   help="hide findings below this severity (default: show all)")
    p.add_argument("-n", "--limit", type=count_arg, help="at most this many findings, most severe first")
    p.set_defaults(func=cmd_insights)

    p = sub.add_parser("watch", parents=[common], help="evaluate alert rules continuously; notify log and webhook")
    p.add_argument("--config", type=Path, required=True, help="TOML file with [alerts] and [[alerts.rules]]")
    p.add_argument("--interval", type=float, help="seconds between evaluations (default: the file's, else 30)")
    p.add_argument("--once", action="store_true",
                   help="evaluate once and exit (alert state is kept, so cool-downs still hold)")
    p.set_defaults(func=cmd_watch)

    p = sub.add_parser("check", parents=[common],
                       help="validate the data directory: list unreadable files, --fix moves them aside")
    p.add_argument("--fix", action="store_true",
                   help="move unreadable files into events/quarantine/ (never deletes anything)")
    p.set_defaults(func=cmd_check)
    return parser


def _data_error(e: BaseException) -> bool:
    """A DuckDB or I/O failure is about the data and gets one line; anything else is a bug to show."""
    return isinstance(e, OSError | RuntimeError) or type(e).__module__.split(".")[0] in ("duckdb", "_duckdb")


def _interrupted(e: BaseException) -> bool:
    """Ctrl-C during a DuckDB query arrives as DuckDB's InterruptException, not KeyboardInterrupt."""
    return isinstance(e, KeyboardInterrupt) or type(e).__name__ == "InterruptException"


def parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """Like ``parse_args``, but a flag a subcommand does not know is reported with *its* usage."""
    args, extra = parser.parse_known_args(argv)
    if extra:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))  # noqa: SLF001
        target = sub.choices.get(getattr(args, "command", None) or "", parser)
        target.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parse(parser, argv)
    except SystemExit as e:  # --help, or a usage error argparse already explained
        return e.code if isinstance(e.code, int) else 0 if e.code is None else 2
    if getattr(args, "standalone", False):  # commands that do not read the store
        try:
            return int(args.func(args))
        except (UsageError, ValueError, TypeError) as e:
            print(f"mcplens {args.command}: error: {e}", file=sys.stderr)
            return 2
    explicit = args.home is not None or bool(os.environ.get("MCPLENS_HOME"))
    home = (args.home or default_home()).expanduser()
    args.home_dir = home
    if explicit and not home.is_dir():  # a typo must not read as "nothing recorded yet"
        what = "is not a directory" if home.exists() else "does not exist"
        source = "--home" if args.home is not None else "$MCPLENS_HOME"
        print(f"mcplens {args.command}: error: data directory {safetext.text(str(home))} ({source}) {what}",
              file=sys.stderr)
        return 2
    config = getattr(args, "config", None)
    if args.command == "watch" and config is not None and not config.is_file():
        what = "is not a file" if config.exists() else "does not exist"
        print(f"mcplens watch: error: config file {safetext.text(str(config))} {what}", file=sys.stderr)
        return 2
    if not (home / "events").is_dir():
        print(f"mcplens: no events recorded yet under {safetext.text(str(home))}; instrument a server first "
              "(see README)", file=sys.stderr)
        if args.command not in ("tail", "watch") or args.once:
            if args.json and args.command in ("report", "sessions", "health", "insights"):
                emit_json([])
            return 0
    store = open_store(home)
    try:
        return args.func(store, args)
    except (UsageError, ValueError) as e:
        print(f"mcplens {args.command}: error: {e}", file=sys.stderr)
        return 2
    except ImportError as e:
        print(f"mcplens: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0 if args.command == "tail" else 130
    except BrokenPipeError:  # `mcplens tail | head`: the reader has gone, which is fine
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as e:
        if _interrupted(e):
            return 0 if args.command == "tail" else 130
        if not _data_error(e):
            raise
        print(f"mcplens: cannot read events under {safetext.text(str(home))}: {str(e).splitlines()[0]}",
              file=sys.stderr)
        return 1
    finally:
        report_bad_files(store)


if __name__ == "__main__":
    sys.exit(main())
