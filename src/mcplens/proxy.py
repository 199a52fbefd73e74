"""``mcplens proxy``: monitoring for any MCP server, no code change, any language.

``mcplens proxy [options] -- CMD [ARGS...]`` wraps a stdio server; ``mcplens proxy --upstream URL``
fronts a streamable-HTTP one. Both take the same settings as ``instrument()`` (flags win over
``MCPLENS_*`` variables), and ``MCPLENS_DISABLED=1`` turns them into plain relays that record
nothing.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path
from typing import Any

from mcplens.config import Settings, disabled, from_env

DEFAULT_LISTEN = "127.0.0.1:8808"


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """The ``proxy`` subcommand, registered by :mod:`mcplens.cli`."""
    p: argparse.ArgumentParser = sub.add_parser(
        "proxy", help="record any MCP server: wrap a stdio command (-- CMD ...) or front an HTTP one (--upstream)",
        description="Relay an MCP server's traffic unchanged and record every call. "
                    "stdio: mcplens proxy [options] -- CMD [ARGS...]; HTTP: mcplens proxy --upstream URL.",
    )
    p.add_argument("--home", type=Path, help="data directory (default: $MCPLENS_HOME or the platform's)")
    p.add_argument("--server-name", help="server name to record (default: the server's own serverInfo)")
    p.add_argument("--server-version", help="server version to record (default: the server's own)")
    p.add_argument("--queue-size", type=int, help="events held in memory at most (default 10000)")
    p.add_argument("--flush-interval", type=float, help="seconds between writes (default 0.25)")
    p.add_argument("--upstream", help="streamable-HTTP mode: the server's MCP endpoint, e.g. http://127.0.0.1:8000/mcp")
    p.add_argument("--listen", default=DEFAULT_LISTEN, help=f"HTTP mode: where to listen (default {DEFAULT_LISTEN})")
    p.add_argument("--max-body", type=parse_size, default=None,
                   help="HTTP mode: largest request body forwarded, e.g. 16MiB (default $MCPLENS_PROXY_MAX_BODY "
                        "or 16MiB); larger ones get 413")
    p.add_argument("--max-in-flight", type=int, default=None,
                   help="HTTP mode: most requests in flight, open GET streams included (default "
                        "$MCPLENS_PROXY_MAX_IN_FLIGHT or 4096); past it, 503")
    p.add_argument("cmd", nargs=argparse.REMAINDER, help="stdio mode: the server command, after --")
    p.set_defaults(func=main, standalone=True)
    return p


_SIZE = re.compile(r"\s*(\d+)\s*([kmg]i?b?|b)?\s*", re.I)


def parse_size(text: str) -> int:
    """Bytes from ``16777216``, ``16MiB``, ``512k``, ``1G`` (powers of 1024)."""
    m = _SIZE.fullmatch(text)
    if m is None:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 16MiB)")
    unit = (m.group(2) or "b")[0].lower()
    return int(m.group(1)) * {"b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[unit]


def settings_of(args: argparse.Namespace) -> Settings:
    overrides = {
        "home": args.home, "server_name": args.server_name, "server_version": args.server_version,
        "queue_size": args.queue_size, "flush_interval": args.flush_interval,
        # the proxy forwards SIGTERM to the server and flushes on the way out by itself
        "handle_sigterm": False,
    }
    return from_env().with_overrides(**overrides)


def collecting(settings: Settings) -> bool:
    """The kill switch and, where the settings know it, packaged mode's opt-in."""
    return not disabled() and settings.opted_in()[0]


def main(args: argparse.Namespace) -> int:
    command = list(args.cmd)
    if command and command[0] == "--":
        command = command[1:]
    settings = settings_of(args)
    if args.upstream:
        if command:
            print("mcplens proxy: give either --upstream URL or -- CMD, not both", file=sys.stderr)
            return 2
        from mcplens.capture.proxy_http import DEFAULT_MAX_BODY, DEFAULT_MAX_IN_FLIGHT, serve

        try:
            max_body = args.max_body if args.max_body is not None else parse_size(
                os.environ.get("MCPLENS_PROXY_MAX_BODY") or str(DEFAULT_MAX_BODY))
            max_in_flight = args.max_in_flight if args.max_in_flight is not None else int(
                os.environ.get("MCPLENS_PROXY_MAX_IN_FLIGHT") or DEFAULT_MAX_IN_FLIGHT)
        except (ValueError, argparse.ArgumentTypeError) as e:
            print(f"mcplens proxy: MCPLENS_PROXY_MAX_BODY / MCPLENS_PROXY_MAX_IN_FLIGHT: {e}", file=sys.stderr)
            return 2
        from mcplens.exporters import pipeline_with_exporters

        return serve(args.upstream, args.listen, settings,
                     open_pipeline=pipeline_with_exporters if collecting(settings) else None,
                     max_body=max_body, max_in_flight=max_in_flight)
    if not command:
        print("mcplens proxy: nothing to run; usage: mcplens proxy [options] -- CMD [ARGS...] "
              "or mcplens proxy --upstream URL", file=sys.stderr)
        return 2
    from mcplens.capture.proxy_stdio import StdioProxy, exit_like
    from mcplens.exporters import pipeline_with_exporters

    pipeline = pipeline_with_exporters(settings) if collecting(settings) else None
    return exit_like(StdioProxy(command, pipeline, settings).run())
