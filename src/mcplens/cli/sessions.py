"""``mcplens sessions`` (the list, or one session's events) and ``mcplens tail`` (events as they arrive)."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from mcplens import safetext, views
from mcplens.cli.common import report_bad_files, window_of
from mcplens.cli.output import emit_json, fmt_bytes, fmt_int, fmt_ms, fmt_time, listing, progress, table, trim
from mcplens.store.base import Store

#: seconds of look-back for ``tail``: an event is stamped with its *start* time but written when
#: it ends, so a slow call appears after faster later ones
TAIL_LOOKBACK = 900.0
TAIL_INTERVAL = 0.5
#: the proxy marks requests the server sent to the client (sampling, elicitation ...) with this
SERVER_TO_CLIENT = "server_to_client"


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
            line = safetext.dumps(e) if args.json else tail_line(safetext.safe(e))
            print(line, flush=True)
        report_bad_files(store)

    n = args.limit
    server = args.server
    if args.once:  # the filter goes into the query: the newest n *matching* events
        show(views.tail(store, 0.0, limit=n, server=server) if n else [])
        return 0
    # One listing decides both what is printed first and what counts as seen, so no event falls
    # between the two or shows twice.
    recent = views.tail(store, time.time() - TAIL_LOOKBACK, server=server)
    last = recent[len(recent) - n :] if len(recent) >= n else views.tail(store, 0.0, limit=n, server=server)
    show(last if n else [])
    seen = {e["event_id"]: e["time"] for e in (*recent, *last)}
    try:
        while True:
            time.sleep(TAIL_INTERVAL)
            cutoff = time.time() - TAIL_LOOKBACK
            new = [e for e in views.tail(store, cutoff, server=server) if e["event_id"] not in seen]
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
        rows = views.sessions(store, window, server=args.server, limit=args.limit)
    rows = listing(rows, args.json, "no sessions recorded")
    if rows is None:
        return 0
    body = [
        [short(r["session_id"]), " ".join(x for x in (r["client_name"], r["client_version"]) if x) or "-",
         r["server"] or "-", fmt_time(r["first_seen"]), fmt_time(r["last_seen"]), fmt_int(r["calls"]),
         fmt_int(r["errors"]), trim(", ".join(r["tools"]) or "-", 60)]
        for r in rows
    ]
    headers = ["SESSION", "CLIENT", "SERVER", "FIRST SEEN", "LAST SEEN", "CALLS", "ERRORS", "TOOLS"]
    print(table(headers, body, right={5, 6}))
    return 0


def session_detail(store: Store, args: argparse.Namespace) -> int:
    try:
        with progress("reading session"):
            events = views.session(store, args.id)
    except views.NoSuchSession:
        print(f"mcplens: no session matching {safetext.text(repr(args.id))}", file=sys.stderr)
        return 1
    except views.AmbiguousSession as e:
        matched = e.matches
        listed = ", ".join(safetext.safe(matched[:5])) + (", ..." if len(matched) > 5 else "")
        print(f"mcplens: {safetext.text(repr(args.id))} matches {len(matched)} sessions ({listed}); "
              "give more of the id", file=sys.stderr)
        return 1
    if args.json:
        emit_json(events)
        return 0
    events = safetext.safe(events)
    print(f"session {events[0]['session']}: {len(events)} events")
    body = [
        [fmt_time(e["time"], millis=True), _direction(e), e.get("method") or "-", e.get("target") or "-",
         e.get("status") or "-", fmt_ms(None if e.get("duration_s") is None else e["duration_s"] * 1000),
         fmt_bytes(e.get("response_size")), e.get("error_type") or ""]
        for e in events
    ]
    print(table(["TIME", "DIR", "METHOD", "TARGET", "STATUS", "ms", "BYTES", "ERROR"], body, right={5, 6}))
    if any(e.get("proxy_direction") == SERVER_TO_CLIENT for e in events):
        print("DIR: -> a request from the client to the server; <- one the server sent the client "
              "(sampling, elicitation, roots)")
    return 0


def _direction(e: dict[str, Any]) -> str:
    return "<-" if e.get("proxy_direction") == SERVER_TO_CLIENT else "->"
