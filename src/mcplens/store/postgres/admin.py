"""``mcplens db ...`` and ``mcplens retention``: the PostgreSQL store's admin commands.

Run with an admin role (the owner of schema ``mcplens``); replicas use the writer role, the CLI and
dashboard the reader role. Every URL these commands print is masked.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from mcplens.store.postgres import clean_error, connect, is_postgres, mask_url


def _url(args: argparse.Namespace) -> str:
    url = args.store or os.environ.get("MCPLENS_STORE") or ""
    if not is_postgres(url):
        raise ValueError("name the database with --store postgresql://... or $MCPLENS_STORE")
    return url


def _out(args: argparse.Namespace, data: dict[str, Any], text: str) -> None:
    print(json.dumps(data, indent=1) if args.json else text)


def cmd_db(args: argparse.Namespace) -> int:
    from mcplens.store.postgres import schema

    url = _url(args)
    if args.action == "replay":
        return _replay(args, url)
    try:
        conn = connect(url, application_name="mcplens-admin")
    except ConnectionError as e:
        print(f"mcplens db {args.action}: {e}", file=sys.stderr)
        return 1
    try:
        if args.action == "upgrade":
            applied = schema.upgrade(conn)
            version = schema.current_version(conn)
            _out(args, {"applied": applied, "version": version},
                 f"{mask_url(url)}: schema version {version}"
                 + (f" (applied {', '.join(map(str, applied))})" if applied else " (already up to date)"))
        elif args.action == "status":
            version = schema.current_version(conn)
            parts = schema.partitions(conn) if version else []
            rolled, batches = None, 0
            if version >= 3:
                row = conn.execute(f"SELECT (SELECT value::float8 FROM {schema.SCHEMA}.settings "
                                   f"WHERE key = 'rolled_until'), (SELECT count(*) FROM {schema.SCHEMA}.batches)"
                                   ).fetchone()
                rolled, batches = row[0], int(row[1])
            _out(args, {"version": version, "latest": schema.LATEST, "partitions": [p for p, _ in parts],
                        "rolled_until": rolled, "batches": batches},
                 f"{mask_url(url)}: schema version {version} of {schema.LATEST}; {len(parts)} day partition(s)"
                 + (f", {parts[0][0]} .. {parts[-1][0]}" if parts else "")
                 + (f"; {batches} rollup batch(es) up to "
                    f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(rolled))}" if rolled is not None
                    else "; nothing rolled up yet (`mcplens db rollup`)"))
        elif args.action == "rollup":
            from mcplens.store.postgres import mirror

            home = mirror.mirror_home(conn, args.cache)
            res = mirror.roll_up(conn, home, grace=float(args.grace), budget=args.budget_rollup)
            _out(args, res, f"rolled up {res['events']:,} event(s) into {len(res['batches'])} batch(es)"
                 + (f" ({res['late']:,} late)" if res["late"] else "")
                 + ("" if res["rolled_until"] is None else
                    f"; rolled up until {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(res['rolled_until']))}")
                 + ("" if res.get("done", True) else "; more to do (run again)"))
        elif args.action == "grant":
            if not args.login or args.role is None:
                raise ValueError("mcplens db grant LOGIN --as writer|reader")
            schema.grant(conn, args.login, args.role)
            _out(args, {"granted": args.role, "to": args.login}, f"{args.login} is now a member of mcplens_{args.role}")
        return 0
    except Exception as e:  # noqa: BLE001 - a database error is one masked line, not a traceback
        if type(e).__module__.split(".")[0] != "psycopg":
            raise
        print(f"mcplens db {args.action}: {clean_error(e, url)}", file=sys.stderr)
        return 1
    finally:
        conn.close()


def _replay(args: argparse.Namespace, url: str) -> int:
    """Push what replicas spooled under a home (e.g. after the database was down when they stopped)."""
    from mcplens.config import default_home
    from mcplens.store.postgres.writer import PostgresWriter

    home = (args.home or default_home()).expanduser()
    writer = PostgresWriter(url, home, os.urandom(16).hex())
    try:
        done = writer.replay(budget=float(args.budget))
    finally:
        writer.close()
    s = writer.stats
    _out(args, {"replayed": s["replayed"], "rejected": s["rejected"], "complete": done},
         f"replayed {s['replayed']:,} spooled event(s) to {mask_url(url)}" + ("" if done else "; some remain"))
    return 0 if done else 1


def cmd_retention(args: argparse.Namespace) -> int:
    from mcplens.store.postgres import schema
    from mcplens.store.window import _DURATION, _UNIT

    url = _url(args)
    keep = None
    if args.keep is not None:
        m = _DURATION.match(args.keep)
        if not m:
            raise ValueError(f"--keep {args.keep!r}: use an age like 30d, 12h or 2w")
        keep = float(m.group(1)) * _UNIT[m.group(2).lower()]
    conn = connect(url, application_name="mcplens-admin")
    try:
        result = schema.apply_retention(conn, keep)
    except Exception as e:  # noqa: BLE001
        if type(e).__module__.split(".")[0] != "psycopg":
            raise
        print(f"mcplens retention: {clean_error(e, url)}", file=sys.stderr)
        return 1
    finally:
        conn.close()
    if result["keep_seconds"] is None:
        _out(args, result, "no retention set: everything is kept (set one with --keep 30d)")
    else:
        _out(args, result, f"keeping {result['keep_seconds'] / 86400:g} day(s); dropped "
             f"{len(result['dropped'])} day partition(s)" + (f": {', '.join(result['dropped'])}" if result["dropped"]
                                                          else ""))
    return 0


def add_parsers(sub: Any) -> None:
    """The ``db`` and ``retention`` commands (they talk to the database, not the data directory)."""
    store = argparse.ArgumentParser(add_help=False)
    store.add_argument("--store", help="postgresql://... URL, libpq form (default: $MCPLENS_STORE)")
    store.add_argument("--json", action="store_true", help="machine-readable output")
    p = sub.add_parser("db", parents=[store], help="PostgreSQL store: upgrade the schema, status, grant roles, replay")
    p.add_argument("action", choices=("upgrade", "status", "grant", "replay", "rollup"),
                   help="upgrade: apply migrations (idempotent); status; grant LOGIN --as writer|reader; "
                        "replay: push the spool a replica left under --home; rollup: roll the closed hours "
                        "into the batches readers use (run every few minutes, as the admin role)")
    p.add_argument("login", nargs="?", help="grant: an existing login role")
    p.add_argument("--as", dest="role", choices=("writer", "reader"), help="grant: which role to give")
    p.add_argument("--home", type=Path, help="replay: the data directory holding the spool")
    p.add_argument("--budget", type=float, default=600.0, help="replay: seconds at most (default 600)")
    p.add_argument("--grace", type=float, default=300.0,
                   help="rollup: seconds after an hour ends before it is rolled up (default 300)")
    p.add_argument("--cache", type=Path, help="rollup: where its working mirror lives (default: the user's cache)")
    p.add_argument("--rollup-budget", dest="budget_rollup", type=float, default=None,
                   help="rollup: seconds after which no new day is started")
    p.set_defaults(func=cmd_db, standalone=True)
    p = sub.add_parser("retention", parents=[store],
                       help="PostgreSQL store: drop day partitions older than --keep (saved as the setting)")
    p.add_argument("--keep", help="how long to keep events: 30d, 12h, 2w (default: the saved setting)")
    p.set_defaults(func=cmd_retention, standalone=True)
