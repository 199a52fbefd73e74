"""The reader under damage and churn: a bad file costs its own events, not the command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mcplens import cli
from mcplens.store.local import reader as local
from mcplens.store.local.reader import LocalStore
from tests.store.factory import health, request, write

NOW = time.time()


def _batches(home: Path) -> list[Path]:
    return sorted((home / "events" / "parquet").glob("*.parquet"))


def two_batches(home: Path) -> tuple[Path, Path]:
    """Two compacted batches (servers a and b) and one uncompacted segment (server c)."""
    now = time.time()
    write(home, [request(now - 500 + i, target="alpha", server="a", session="sa") for i in range(7)]
          + [health("inst-a", now - 400, server="a")], instance="inst-a")
    assert LocalStore(home).compact().batches
    first = _batches(home)
    write(home, [request(now - 300 + i, target="beta", server="b", session="sb") for i in range(5)], instance="inst-b")
    LocalStore(home).compact()
    second = [p for p in _batches(home) if p not in first]
    write(home, [request(now - 100 + i, target="gamma", server="c", session="sc") for i in range(3)], instance="inst-c")
    return first[0], second[0]


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_every_command_names_a_corrupt_batch_and_reads_the_rest(home: Path, capsys: pytest.CaptureFixture[str],
                                                                damage: str) -> None:
    bad, _ = two_batches(home)
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 2] if damage == "truncate" else os.urandom(len(data)))
    expect = {
        ("report", "--json"): lambda out: {r["name"] for r in json.loads(out)} == {"beta", "gamma"},
        ("sessions", "--json"): lambda out: {r["session_id"] for r in json.loads(out)} == {"sb", "sc"},
        ("tail", "--once", "--json"): lambda out: {json.loads(x)["target"] for x in out.splitlines()} == {"beta",
                                                                                                        "gamma"},
        ("health", "--json"): lambda out: json.loads(out) == [],  # inst-a's record was in the bad batch
        ("insights", "--json"): lambda out: isinstance(json.loads(out), list),
        ("sessions", "sb", "--json"): lambda out: len(json.loads(out)) == 5,
        ("report", "--since", "1h", "--json"): lambda out: {r["name"] for r in json.loads(out)} == {"beta", "gamma"},
    }
    for argv, ok in expect.items():
        rc = cli.main(list(argv))
        out, err = capsys.readouterr()
        assert rc == 0, (argv, err)
        assert str(bad) in err and "mcplens check --fix" in err, (argv, err)
        assert ok(out), (argv, out)


def test_a_damaged_manifest_is_named_and_its_batch_survives_compaction(home: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    first, _ = two_batches(home)
    manifest = first.with_name(first.name.removesuffix(".parquet") + ".manifest.json")
    manifest.write_text('{"version": 1, "parq')
    rc = cli.main(["report", "--json"])
    out, err = capsys.readouterr()
    assert rc == 0 and {r["name"] for r in json.loads(out)} == {"beta", "gamma"}
    assert str(manifest) in err
    assert cli.main(["compact"]) == 0
    assert first.exists()  # not taken for an uncommitted leftover and deleted


def test_a_stray_file_named_like_a_glob_is_read_once(home: Path) -> None:
    write(home, [request(NOW - 50 + i, target="real", session="s1") for i in range(4)])
    closed = home / "events" / "closed"
    stray = closed / "*.jsonl"  # matches every segment as a pattern; is one file as a name
    stray.write_bytes((json.dumps(request(NOW - 5, target="stray", session="s2")) + "\n").encode())
    (closed / "x[1].jsonl").write_bytes((json.dumps(request(NOW - 4, target="bracket", session="s3")) + "\n").encode())
    store = LocalStore(home)
    rows = {r["name"]: r["calls"] for r in store.tool_table()}
    assert rows == {"real": 4, "stray": 1, "bracket": 1}
    assert len(store.events_since(0)) == 6


CHURN = """
import json, os, sys, time
events, stop_file = sys.argv[1], sys.argv[2]
line = (json.dumps({"event.id": "h", "event.kind": "mcplens.health", "mcplens.time": time.time()}) + "\\n").encode()
print("ready", flush=True)
n, ring = 0, []
while not os.path.exists(stop_file):  # writers rotating segments, a compactor folding them, no pause
    n += 1
    name = f"20261128T000000-{os.getpid()}-churn-{n:06d}.jsonl"
    live, closed = os.path.join(events, "live", name), os.path.join(events, "closed", name)
    with open(live, "wb") as f:
        f.write(line)
    os.rename(live, closed)
    ring.append(closed)
    if len(ring) > 10:  # ~10 segments in flight: every listing names some that are gone by the read
        os.unlink(ring.pop(0))
for p in ring:
    os.unlink(p)
"""


def test_readers_keep_trying_under_heavy_churn(home: Path, capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Segments appear, move and go under every read until the reader has retried 25 times: it
    used to give up after 20 re-listings and ``report`` exited 1; it must outlast the churn.

    The churn stops after a count of retries, not a time, so the test holds on a slow machine;
    the wrapper keeps the pauses short (the retry logic itself is the real one)."""
    write(home, [request(NOW - 50 + i, target="steady", session="s1") for i in range(6)], instance="steady")
    write(home, [request(NOW - 40 + i, target="live", session="s2") for i in range(3)], instance="running",
          close=False)
    stop = tmp_path / "stop-churn"
    retries = []
    real = local._backoff

    def counted(attempt: int) -> None:
        retries.append(attempt)
        if len(retries) >= 25:
            stop.touch()
        real(min(attempt, 2))

    monkeypatch.setattr(local, "_backoff", counted)
    proc = subprocess.Popen([sys.executable, "-c", CHURN, str(home / "events"), str(stop)], stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        rc = cli.main(["report", "--json", "--since", "1h"])  # the scan path, no rollups
    finally:
        stop.touch()
        proc.wait(timeout=30)
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert len(retries) >= 25  # it did meet the churn
    assert sorted((r["name"], r["calls"]) for r in json.loads(out)) == [("live", 3), ("steady", 6)]


def test_a_damaged_rollup_file_is_named_and_the_commands_scan_instead(home: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    two_batches(home)
    rollup = sorted((home / "events" / "parquet" / "rollups").glob("*.parquet"))[0]
    rollup.write_bytes(b"PAR1 not really")
    for argv in (["report", "--json"], ["insights", "--json"]):
        rc = cli.main(argv)
        out, err = capsys.readouterr()
        assert rc == 0, (argv, err)
        assert str(rollup) in err, (argv, err)
        if argv[0] == "report":  # every event still counted, by a scan
            assert {r["name"]: r["calls"] for r in json.loads(out)} == {"alpha": 7, "beta": 5, "gamma": 3}
