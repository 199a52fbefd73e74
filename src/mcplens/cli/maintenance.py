"""``mcplens compact`` and ``mcplens check`` (the data directory's upkeep) and ``mcplens disclose``."""

from __future__ import annotations

import argparse
import json

from mcplens import safetext, views
from mcplens.cli.output import emit_json, progress
from mcplens.store.base import Store


def cmd_compact(store: Store, args: argparse.Namespace) -> int:
    with progress("compacting"):
        result = views.compact(store)
    if args.json:
        print(json.dumps(result))
        return 0
    removed, rolled = result["removed"], result["rolled_up"]
    if result["busy"]:
        print("another compaction is running; nothing done")
    elif not result["batches"]:
        print("nothing to compact" + (f" (cleaned up {removed} leftover file(s))" if removed else "")
              + (f"; rolled up {rolled} earlier batch(es) for the insights" if rolled else ""))
    else:
        names = ", ".join(f"{b}.parquet" for b in result["batches"])
        print(f"compacted {result['segments']} segment(s), {result['events']:,} events, into {names}"
              + (f"; cleaned up {removed} leftover file(s)" if removed else "")
              + (f"; rolled up {rolled} earlier batch(es) for the insights" if rolled else ""))
    return 0


def cmd_check(store: Store, args: argparse.Namespace) -> int:
    with progress("checking the data directory"):
        result = views.check(args.home_dir, fix=args.fix)
    if args.json:
        emit_json(result)
        return 1 if result["problems"] and not args.fix else 0
    for pr in result["problems"]:
        moved = f" -> moved to {safetext.text(pr['moved_to'])}" if pr["moved_to"] else ""
        print(f"BAD  {safetext.text(pr['path'])}: {safetext.text(pr['why'])}{moved}")
    print(f"checked {result['files']:,} file(s) under {safetext.text(str(args.home_dir))}: "
          + (f"{len(result['problems'])} unreadable" if result["problems"] else "all readable"))
    if result["problems"] and not args.fix:
        print("run `mcplens check --fix` to move them into "
              f"{safetext.text(result['quarantine'])} (nothing is deleted)")
        return 1
    return 0


def cmd_disclose(args: argparse.Namespace) -> int:
    from mcplens.config import from_env
    from mcplens.disclose import render

    overrides = {"mode": args.mode, "opt_in_env": args.opt_in_env, "config": args.config, "home": args.home}
    print(render(from_env().with_overrides(**overrides), server=args.server_name), end="")
    return 0
