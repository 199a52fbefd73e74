"""``mcplens dashboard``: the store as web pages on 127.0.0.1, nothing to install or run beside it.

The CLI calls :func:`add_parser`; everything else lives in this package: ``app`` (the ASGI app and
its guard), ``data`` (what each endpoint returns: the CLI's ``--json`` rows plus chart data),
``series`` (time series from the rollups) and ``static/`` (one page, one script, uPlot vendored).
Starlette and uvicorn are imported only when the command runs (``pip install 'mcplens[dashboard]'``).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the serving side's modules load when it runs: every CLI command registers this one
    import socket

DEFAULT_PORT = 8765


def needs_token(host: str) -> bool:
    """Only 127.0.0.1, ::1 and localhost go without a token; any other address (127.0.0.2 or
    0.0.0.0 included) is reachable by someone else, or is a choice to make it so."""
    return host not in ("127.0.0.1", "::1", "localhost")


def add_parser(sub: Any) -> None:
    """Register ``mcplens dashboard`` on the CLI's subparsers (the CLI calls only this)."""
    p = sub.add_parser("dashboard", help="web pages of tools, clients, sessions, flows, security, health, alerts")
    p.add_argument("--home", type=Path, help="data directory (default: $MCPLENS_HOME or the platform's)")
    p.add_argument("--store", help="read a PostgreSQL store: postgresql://... (default: $MCPLENS_STORE)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1; any other address requires the printed token)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0 picks a free one)")
    p.add_argument("--open", action="store_true", help="open the dashboard in a web browser")
    p.add_argument("--alerts", type=Path, help="the alert rules file `mcplens watch --config` reads, to show them")
    p.add_argument("--config", type=Path, help="TOML file whose [insights] table overrides thresholds")
    p.set_defaults(func=run_command, standalone=True)


def bind(host: str, port: int) -> socket.socket:
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def url_of(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"


def run_command(args: argparse.Namespace) -> int:
    import ipaddress
    import secrets

    from mcplens.config import default_home

    explicit = args.home is not None or bool(os.environ.get("MCPLENS_HOME"))
    home = (args.home or default_home()).expanduser()
    store_url = getattr(args, "store", None) or os.environ.get("MCPLENS_STORE") or None  # PostgreSQL: no home
    if explicit and not store_url and not home.is_dir():
        print(f"mcplens dashboard: error: data directory {home} does not exist", file=sys.stderr)
        return 2
    try:
        import uvicorn

        from mcplens.dashboard.app import create_app
        from mcplens.store import open_store
    except ImportError as e:
        print(f"mcplens dashboard: {e}; pip install 'mcplens[dashboard]'", file=sys.stderr)
        return 1
    try:
        if args.host != "localhost":
            ipaddress.ip_address(args.host)
    except ValueError:
        print(f"mcplens dashboard: error: --host {args.host!r} is not an IP address", file=sys.stderr)
        return 2
    host = "127.0.0.1" if args.host == "localhost" else args.host
    try:
        sock = bind(host, args.port)
    except OSError as e:
        print(f"mcplens dashboard: error: cannot listen on {host}:{args.port}: {e.strerror}", file=sys.stderr)
        return 1
    port = sock.getsockname()[1]
    token = secrets.token_urlsafe(24) if needs_token(host) else None
    app = create_app(open_store(store_url or home), home=home, alerts_config=args.alerts, insights_config=args.config,
                     token=token, port=port)
    url = url_of(host, port)
    if store_url:
        from mcplens.store.postgres import mask_url

        shown = mask_url(store_url)
    else:
        shown = str(home)
    print(f"mcplens dashboard: {url} (data: {shown}; Ctrl-C stops it)", flush=True)
    if token is not None:  # once, on stderr: whoever has it can read every page
        print(f"mcplens dashboard: {host} is not loopback, so a token is required. Open once:\n"
              f"  {url}?token={token}", file=sys.stderr, flush=True)
    if args.open:
        import webbrowser

        webbrowser.open(url + (f"?token={token}" if token else ""))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"))
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    return 0
