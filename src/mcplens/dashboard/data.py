"""What each ``/api/`` endpoint returns: the CLI's ``--json`` rows, plus the charts' data.

Rows that the CLI also prints come from :mod:`mcplens.views`, the functions ``mcplens
report/sessions/health/insights --json`` print, so a page and the CLI never disagree.
The chart data (``series``) and the pages the CLI has no command for (clients, flows, alerts) are
read here, from rollups where a window can be long.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from mcplens import views
from mcplens.dashboard import series
from mcplens.store.base import Store, TimeWindow
from mcplens.store.sql import ERROR, window_where

# ---- what the CLI prints with --json: the same views functions -------------------------------


def tools(store: Store, window: TimeWindow | None, server: str | None = None, sort: str = "calls",
          tool: str | None = None) -> list[dict[str, Any]]:
    """= ``mcplens report --json``."""
    return views.tools(store, window, server=server, tool=tool, sort=sort)


def sessions(store: Store, window: TimeWindow | None, server: str | None = None,
             limit: int | None = 50) -> list[dict[str, Any]]:
    """= ``mcplens sessions --json``."""
    return views.sessions(store, window, server=server, limit=limit)


def session(store: Store, session_id: str) -> list[dict[str, Any]]:
    """= ``mcplens sessions ID --json``; raises views.NoSuchSession / views.AmbiguousSession."""
    return views.session(store, session_id)


def health(store: Store, window: TimeWindow | None) -> list[dict[str, Any]]:
    """= ``mcplens health --json``."""
    return views.health(store, window)


def insights(store: Store, window: TimeWindow | None, server: str | None = None,
             config: Path | None = None) -> list[dict[str, Any]]:
    """= ``mcplens insights --json``."""
    from mcplens.analysis.core import load_options

    return views.insights(store, window, server=server, options=load_options(config))


# ---- the dashboard's own ---------------------------------------------------------------------
# (tool_errors, flows and instances run SQL over the store's ``events`` view: the local store's
# ``query``; a store without one would need these rows from its own queries)


def overview(store: Store, window: TimeWindow | None, server: str | None = None) -> dict[str, Any]:
    """Calls, errors, latency and active sessions over time, from the rollups only (the page takes
    the pipeline's own losses from ``/api/health``, which reads the health records)."""
    out = series.traffic(store, window, server)
    out["totals"] = {"calls": sum(out["calls"]), "errors": sum(out["errors"])}
    return out


def tool_detail(store: Store, window: TimeWindow | None, tool: str, server: str | None = None) -> dict[str, Any]:
    """One tool: its latency/payload over time and histograms (rollups)."""
    return series.traffic(store, window, server, tool)


def _windows(store: Any) -> Any:
    """The local store's window rollups (store/local/windows.py), or None for a store without them."""
    if not hasattr(store, "_snapshot_since"):
        return None
    from mcplens.store.local import windows

    return windows


def tool_errors(store: Any, window: TimeWindow | None, tool: str, server: str | None = None) -> list[dict[str, Any]]:
    """One tool's failed calls grouped by category, type and message (the ``werrors`` rollup)."""
    win = _windows(store)
    if win is not None:
        return win.read(store, window, lambda w: win.tool_errors(w, tool, server))
    where, params = window_where(window, server, f"kind = 'request' AND proxy_direction IS NULL AND {ERROR} "
                                 "AND coalesce(target, method) = ?")
    params.insert(0, tool)
    return store.query(
        "SELECT error_category AS category, error_type, error_message AS message, count(*) AS n, max(time) AS last "
        f"FROM events WHERE {where} GROUP BY ALL ORDER BY n DESC, category, error_type LIMIT 50",
        params, since=window.since if window else None)


def flows(store: Any, window: TimeWindow | None, server: str | None = None) -> dict[str, Any]:
    """Which tool follows which within a session: edges with counts (the chains and what each
    implies come from the insights' ``chain`` findings). Over the chart's grid: the window widened
    to whole 5-minute buckets (whole hours when the charts' slots are hours), from the ``flows`` rollup."""
    win = _windows(store)
    if win is not None:
        since, until = series.bounds(store, window)
        grid = series.Grid.of(since, until)
        last = (grid.b1 // series.HOUR + 1) * series.HOUR if grid.hourly else grid.b1 + 1  # hourly rows: whole hours
        wide = TimeWindow(grid.b0 * series.BUCKET, last * series.BUCKET)
        rows = win.read(store, wide, lambda w: win.flows(w, grid.b0, grid.b1, grid.hourly, server))
        return {"edges": rows}
    where, params = window_where(window, server,
                                 "kind = 'request' AND method = 'tools/call' AND session_id IS NOT NULL")
    rows = store.query(
        f"""SELECT src, dst, count(*) AS n, count(DISTINCT sid) AS sessions FROM (
                SELECT session_id AS sid, lag(target) OVER (PARTITION BY session_id ORDER BY time, event_id) AS src,
                       target AS dst FROM events WHERE {where})
            WHERE src IS NOT NULL GROUP BY ALL ORDER BY n DESC, src, dst LIMIT 200""",
        params, since=window.since if window else None)
    return {"edges": rows}


def instances(store: Any, window: TimeWindow | None) -> dict[str, Any]:
    """CPU and memory of each instance over time (its last health record per chart slot) beside the
    call volume."""
    volume = series.volume(store, window)  # = traffic()'s step_s, time and calls
    win = _windows(store)
    if win is not None:
        t0, step = volume["time"][0], volume["step_s"]
        points = win.read(store, window, lambda w: win.instance_points(w, t0, step))
    else:
        where, params = window_where(window, None, "kind = 'mcplens.health'")
        points = store.query(
            "SELECT instance_id, server_name AS server, pid, time, process_cpu_time AS cpu_s, "
            f"process_memory_usage AS memory_bytes, process_start_time AS started FROM events WHERE {where} "
            "ORDER BY instance_id, time", params, since=window.since if window else None)
    return {"points": points, "time": volume["time"], "calls": volume["calls"], "step_s": volume["step_s"]}


def alerts(home: Path, config: Path | None) -> dict[str, Any]:
    """The rules of ``--alerts FILE`` (the file ``mcplens watch --config`` reads) and the episodes
    ``mcplens watch`` keeps beside the data (home/alerts/state.json): read only, never written."""
    rules: list[dict[str, Any]] = []
    problem = None
    if config is not None:
        from mcplens.alerts import load_config

        try:
            cfg = load_config(config)
            rules = [{"name": r.name, "detector": r.detector, "threshold": r.threshold,
                      "min_severity": r.min_severity, "cooldown_s": r.cooldown, "tool": r.tool} for r in cfg.rules]
        except (OSError, ValueError) as e:
            problem = f"cannot read {config}: {e}"
    state: list[dict[str, Any]] = []
    try:
        data = json.loads((home / "alerts" / "state.json").read_text("utf-8"))
        for item in data.get("alerts", []):
            last = item.get("last_fired")
            state.append({"rule": item.get("rule"), "key": item.get("key"), "active": bool(item.get("active")),
                          "last_fired": last if isinstance(last, int | float) and last > 0 else None,
                          "finding": item.get("finding")})
    except FileNotFoundError:
        pass
    except (OSError, ValueError, AttributeError) as e:
        problem = f"cannot read the alert state: {e}"
    return {"config": str(config) if config else None, "rules": rules, "state": state, "problem": problem,
            "now": time.time()}
