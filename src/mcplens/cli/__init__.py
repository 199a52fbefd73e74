"""``mcplens``: read what the capture side recorded.

One module per command group (report, sessions, insights, maintenance); each fetches its rows from
:mod:`mcplens.views`, which the dashboard serves as well, so ``--json`` here and the dashboard's
``/api`` give the same rows. This module builds the command line and maps failures to exit codes.

Exit codes: 0 success (a data directory with nothing recorded yet is a note on stderr, not a
failure, so scripts get ``[]`` from ``--json``), 1 the data could not be read, 2 a bad command
line (a ``--home`` or ``$MCPLENS_HOME`` that does not exist included), 130 interrupted (Ctrl-C).

Every string that came from an event goes through :mod:`mcplens.safetext` before it is printed.
A file the store cannot read is named on stderr and left out; ``mcplens check`` lists and moves
such files aside.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import os
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final, NoReturn

from mcplens import safetext
from mcplens.cli.common import UsageError, report_bad_files
from mcplens.cli.insights import cmd_insights, cmd_watch
from mcplens.cli.maintenance import cmd_check, cmd_compact, cmd_disclose
from mcplens.cli.output import count_arg, emit_json
from mcplens.cli.report import cmd_health, cmd_report
from mcplens.cli.sessions import cmd_sessions, cmd_tail
from mcplens.config import default_home
from mcplens.store import open_store
from mcplens.store.base import SORTS

# ---- entry point ----------------------------------------------------------------------------


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """Every command's parser; with ``command`` one of mcplens's own, only that one's (each run
    builds what it parses: the others, the proxy's, PostgreSQL's and the dashboard's among them,
    were ~10 ms of every start)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--home", type=Path, help="data directory (default: $MCPLENS_HOME or the platform's)")
    common.add_argument("--json", action="store_true", help="machine-readable output")
    common.add_argument("--store", help="read a PostgreSQL store: postgresql://... (default: $MCPLENS_STORE)")
    win = argparse.ArgumentParser(add_help=False)
    win.add_argument("--since", help="15m, 2h, 3d, 1w ago, or an ISO timestamp")
    win.add_argument("--until", help="same forms as --since")
    win.add_argument("--server", help="only this server (by name)")

    parser = argparse.ArgumentParser(prog="mcplens", description="Report on what your MCP servers did.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, add in _COMMANDS:
        if command not in _OWN or command == name:
            add(sub, common, win)
    return parser


_Parents = argparse.ArgumentParser


def _report(sub: Any, common: _Parents, win: _Parents) -> None:
    p = sub.add_parser("report", parents=[common, win], help="per-tool calls, errors, latency, payload")
    p.add_argument("--sort", choices=SORTS, default="calls", help="column to sort by, largest first")
    p.add_argument("--tool", help="only this tool/prompt/resource name, or a method such as tools/list "
                                  "(glob patterns allowed)")
    p.add_argument("-n", "--limit", type=count_arg, help="at most this many rows, after sorting (default all)")
    p.set_defaults(func=cmd_report)


def _tail(sub: Any, common: _Parents, win: _Parents) -> None:
    # -n is --limit in every command: at most N rows/events (tail: the N newest shown first)
    p = sub.add_parser("tail", parents=[common], help="stream events as they arrive")
    p.add_argument("-n", "--limit", "--lines", dest="limit", type=count_arg, default=10,
                   help="at most this many recent events shown first (default 10; --lines is the old spelling)")
    p.add_argument("--once", action="store_true", help="print the recent events and exit")
    p.add_argument("--server", help="only this server (by name)")
    p.set_defaults(func=cmd_tail)


def _sessions(sub: Any, common: _Parents, win: _Parents) -> None:
    p = sub.add_parser("sessions", parents=[common, win], help="list sessions, or show one session's events")
    p.add_argument("id", nargs="?", help="a session id or a unique prefix of one")
    p.add_argument("-n", "--limit", type=count_arg, default=50, help="at most this many sessions (default 50)")
    p.set_defaults(func=cmd_sessions)


def _compact(sub: Any, common: _Parents, win: _Parents) -> None:
    p = sub.add_parser("compact", parents=[common], help="fold finished segments into Parquet")
    p.set_defaults(func=cmd_compact)


def _disclose(sub: Any, common: _Parents, win: _Parents) -> None:
    p = sub.add_parser("disclose", help="print the README section saying what this configuration collects")
    p.add_argument("--mode", choices=("local", "packaged"), help="as instrument(mode=...) (default: $MCPLENS_MODE)")
    p.add_argument("--opt-in-env", help="packaged mode: the server's own opt-in variable")
    p.add_argument("--config", type=Path, help="a TOML file with a [privacy] table")
    p.add_argument("--server-name", default="This server", help="the server's name, as the text should say it")
    p.add_argument("--home", type=Path, help="data directory the text names (default: $MCPLENS_HOME or the platform's)")
    p.set_defaults(func=cmd_disclose, standalone=True)


def _others(sub: Any, common: _Parents, win: _Parents) -> None:
    """The commands other packages add: the proxies, PostgreSQL's administration, the dashboard."""
    from mcplens.proxy import add_parser as add_proxy_parser

    add_proxy_parser(sub)
    from mcplens.store.postgres.admin import add_parsers as add_postgres_parsers

    add_postgres_parsers(sub)

    from mcplens.dashboard import add_parser as add_dashboard_parser

    add_dashboard_parser(sub)


def _health(sub: Any, common: _Parents, win: _Parents) -> None:
    p = sub.add_parser("health", parents=[common], help="the capture pipeline's own counters per process")
    p.add_argument("--since", help="only processes that reported since (15m, 2h, ISO ...)")
    p.add_argument("--until", help="same forms as --since")
    p.set_defaults(func=cmd_health)


def _insights(sub: Any, common: _Parents, win: _Parents) -> None:
    p = sub.add_parser("insights", parents=[common, win],
                       help="what is wrong and what to do: usage, performance, health, security findings")
    p.add_argument("--config", type=Path, help="TOML file whose [insights] table overrides thresholds")
    p.add_argument("--min-severity", choices=("info", "warning", "critical"), default="info",
                   help="hide findings below this severity (default: show all)")
    p.add_argument("-n", "--limit", type=count_arg, help="at most this many findings, most severe first")
    p.set_defaults(func=cmd_insights)


def _watch(sub: Any, common: _Parents, win: _Parents) -> None:
    p = sub.add_parser("watch", parents=[common], help="evaluate alert rules continuously; notify log and webhook")
    p.add_argument("--config", type=Path, required=True, help="TOML file with [alerts] and [[alerts.rules]]")
    p.add_argument("--interval", type=float, help="seconds between evaluations (default: the file's, else 30)")
    p.add_argument("--once", action="store_true",
                   help="evaluate once and exit (alert state is kept, so cool-downs still hold)")
    p.set_defaults(func=cmd_watch)


def _check(sub: Any, common: _Parents, win: _Parents) -> None:
    p = sub.add_parser("check", parents=[common],
                       help="validate the data directory: list unreadable files, --fix moves them aside")
    p.add_argument("--fix", action="store_true",
                   help="move unreadable files into events/quarantine/ (never deletes anything)")
    p.set_defaults(func=cmd_check)


#: every command, in the order of ``mcplens --help``
_COMMANDS: Final = (("report", _report), ("tail", _tail), ("sessions", _sessions), ("compact", _compact),
                    ("disclose", _disclose), ("", _others), ("health", _health), ("insights", _insights),
                    ("watch", _watch), ("check", _check))
#: the commands this module builds alone
_OWN: Final = frozenset(name for name, _ in _COMMANDS if name)


def _data_error(e: BaseException) -> bool:
    """A DuckDB or I/O failure is about the data and gets one line; anything else is a bug to show."""
    return isinstance(e, OSError | RuntimeError) or type(e).__module__.split(".")[0] in ("duckdb", "_duckdb",
                                                                                          "psycopg")


def _interrupted(e: BaseException) -> bool:
    """Ctrl-C during a DuckDB query arrives as DuckDB's error, not KeyboardInterrupt."""
    from mcplens.store import engine

    return engine.interrupted(e)


def parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """Like ``parse_args``, but a flag a subcommand does not know is reported with *its* usage."""
    args, extra = parser.parse_known_args(argv)
    if extra:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))  # noqa: SLF001
        target = sub.choices.get(getattr(args, "command", None) or "", parser)
        target.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


#: commands that only read the store and print what they found: once they are done, nothing of the
#: process is worth tearing down (:func:`run`)
_READ_AND_PRINT: Final = frozenset({"report", "sessions", "health", "insights", "tail", "check"})


def run() -> NoReturn:
    """The ``mcplens`` command: :func:`main`, and after a command that only reads and prints, the end
    of the process without the interpreter's teardown. Its output is flushed and the atexit handlers
    run (temporary directories go), but freeing every object, module and DuckDB's in-memory database
    just before the process vanishes is skipped: a one-shot ``mcplens insights`` over a week of 10M
    events ends 0.02 s after its output instead of 0.045-0.055 s (bench/cold_start.py)."""
    code = main(end_process=True)
    sys.exit(code)


def main(argv: Sequence[str] | None = None, *, end_process: bool = False) -> int:
    words = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(words[0] if words else None)
    try:
        args = parse(parser, argv)
    except SystemExit as e:  # --help, or a usage error argparse already explained
        return e.code if isinstance(e.code, int) else 0 if e.code is None else 2
    code = _dispatch(args)
    if end_process and args.command in _READ_AND_PRINT and threading.active_count() == 1:
        _end_now(code)
    return code


def _end_now(code: int) -> NoReturn:
    """End the process as :func:`sys.exit` would, less the interpreter's teardown: streams flushed,
    atexit handlers run, the shared DuckDB database left to the OS (closing it frees what the exit
    frees anyway)."""
    for name in ("mcplens.store.local.files", "mcplens.store.local.windows"):
        module = sys.modules.get(name)
        if module is not None:  # only what the command loaded
            module.abandon_databases()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a reader gone (`| head`), a stream closed
            stream.flush()
    os._exit(code)


def _dispatch(args: argparse.Namespace) -> int:
    if getattr(args, "standalone", False):  # commands that do not read the store
        try:
            return int(args.func(args))
        except (UsageError, ValueError, TypeError) as e:
            print(f"mcplens {args.command}: error: {e}", file=sys.stderr)
            return 2
    explicit = args.home is not None or bool(os.environ.get("MCPLENS_HOME"))
    store_url = getattr(args, "store", None) or os.environ.get("MCPLENS_STORE") or None  # PostgreSQL: no home checks
    home = (args.home or default_home()).expanduser()
    args.home_dir = home
    if not store_url and explicit and not home.is_dir():  # a typo must not read as "nothing recorded yet"
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
    if not store_url and not (home / "events").is_dir():
        print(f"mcplens: no events recorded yet under {safetext.text(str(home))}; instrument a server first "
              "(see README)", file=sys.stderr)
        if args.command not in ("tail", "watch") or args.once:
            if args.json and args.command in ("report", "sessions", "health", "insights"):
                emit_json([])
            return 0
    try:
        store = open_store(store_url or home)
    except ValueError as e:
        print(f"mcplens {args.command}: error: {e}", file=sys.stderr)
        return 2
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
        if store_url:
            from mcplens.store.postgres import clean_error, mask_url

            print(f"mcplens: cannot read events from {safetext.text(mask_url(store_url))}: "
                  f"{safetext.text(clean_error(e, store_url))}", file=sys.stderr)
            return 1
        print(f"mcplens: cannot read events under {safetext.text(str(home))}: {str(e).splitlines()[0]}",
              file=sys.stderr)
        return 1
    finally:
        report_bad_files(store)
