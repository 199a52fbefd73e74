"""The charts' series over a store that changes under the dashboard: a live segment growing, a
compaction folding segments into Parquet (rollups) between two reads. No call lost or counted twice."""

from __future__ import annotations

import json
import time
from pathlib import Path

from mcplens import event as ev
from mcplens.dashboard import series
from mcplens.store.base import TimeWindow
from mcplens.store.local import LocalStore
from tests.store import factory

TOOLS = ("alpha", "beta", "gamma")


def calls(t0: float, n: int, *, session: str) -> list[dict]:
    return [factory.request(t0 + i * 7.0, target=TOOLS[i % 3], session=session, duration=0.001 * (1 + i % 50),
                            status=ev.TOOL_ERROR if i % 10 == 0 else ev.OK) for i in range(n)]


def counted(store: LocalStore, since: str, tool: str | None = None) -> dict[str, int]:
    o = series.traffic(store, TimeWindow.parse(since, None), tool=tool)
    out = {"calls": sum(o["calls"]), "errors": sum(o["errors"])}
    if tool is not None:
        out["histogram"] = sum(b["n"] for b in o["latency_histogram"])
    return out


def test_growing_segment_then_compaction(tmp_path: Path) -> None:
    home = tmp_path / "home"
    now = time.time()
    first = calls(now - 6 * 3600, 300, session="s1")  # six hours ago onwards, 35 minutes of calls
    factory.write(home, first, instance="a" * 16)  # a closed segment
    live = factory.write(home, calls(now - 1800, 40, session="s2"), instance="b" * 16, close=False)
    store = LocalStore(home)
    assert counted(store, "24h") == {"calls": 340, "errors": 34}
    assert counted(store, "7d") == {"calls": 340, "errors": 34}  # hourly rows: the same calls

    # the live segment grows (another writer batch): the cached rows of that file are redone
    sink_more = calls(now - 600, 20, session="s3")
    with open(live, "a", encoding="utf-8") as f:
        for e in sink_more:
            f.write(json.dumps(e) + "\n")
    assert counted(store, "24h") == {"calls": 360, "errors": 36}

    # a compaction between two reads: closed segments become Parquet with rollups
    assert store.compact().events == 300
    assert counted(store, "24h") == {"calls": 360, "errors": 36}
    assert counted(store, "24h", tool="beta") == {"calls": 120, "errors": 12, "histogram": 120}
    assert counted(store, "7d", tool="beta") == {"calls": 120, "errors": 12, "histogram": 120}
    # the window's start cuts: only the newest calls are in the last hour
    assert counted(store, "1h")["calls"] == 60


def test_hourly_and_five_minute_histograms_agree(tmp_path: Path) -> None:
    """Both grids read the same histogram grid: per tool the same bars, holding every call, the
    slowest call in the top bar."""
    home = tmp_path / "home"
    now = time.time()
    factory.write(home, calls(now - 3 * 3600, 500, session="s1"))
    store = LocalStore(home)
    store.compact()
    exact = {r["name"]: r for r in store.tool_table(TimeWindow.parse("24h", None))}
    for tool in TOOLS:
        fine = series.traffic(store, TimeWindow.parse("24h", None), tool=tool)
        coarse = series.traffic(store, TimeWindow.parse("7d", None), tool=tool)
        assert fine["step_s"] == 300 and coarse["step_s"] == 3600
        assert fine["latency_histogram"] == coarse["latency_histogram"]
        assert sum(b["n"] for b in fine["latency_histogram"]) == exact[tool]["calls"]
        top = fine["latency_histogram"][-1]
        assert top["lo"] <= 50.0 < top["hi"]  # the slowest call took 50 ms


def test_volume_is_traffics_calls(tmp_path: Path) -> None:
    """The Health page's call volume (a counts-only read) equals the traffic chart's, on both grids,
    over stored rollups and an uncompacted tail, with and without a server filter."""
    home = tmp_path / "home"
    now = time.time()
    factory.write(home, calls(now - 5 * 3600, 400, session="s1"))
    LocalStore(home).compact()
    factory.write(home, calls(now - 900, 50, session="s2"), instance="c" * 16)  # the tail
    store = LocalStore(home)
    until = time.time() + 1  # one fixed window for both reads (an open end moves between them)
    for span, want in ((3600, 50), (86400, 450), (7 * 86400, 450)):
        for server in (None, "nosuch"):
            t = series.traffic(store, TimeWindow(until - span, until), server)
            v = series.volume(store, TimeWindow(until - span, until), server)
            assert v == {"step_s": t["step_s"], "time": t["time"], "calls": t["calls"]}
            assert sum(v["calls"]) == (0 if server else want)
