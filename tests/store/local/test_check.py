"""``mcplens check``: lists what cannot be read; ``--fix`` moves it aside and never deletes."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import pytest

from mcplens import cli
from mcplens.store.local.reader import LocalStore
from tests.store.factory import request, write
from tests.store.local.test_resilience import two_batches


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = cli.main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def digest(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_a_clean_directory_checks_clean(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    two_batches(home)
    rc, out, err = run(capsys, "check")
    assert rc == 0 and "all readable" in out and err == ""
    rc, out, _ = run(capsys, "check", "--json")
    result = json.loads(out)
    assert rc == 0 and result["problems"] == [] and result["files"] >= 3


def test_check_lists_every_kind_of_damage_and_fix_moves_it_aside(home: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    first, second = two_batches(home)
    data = first.read_bytes()
    first.write_bytes(data[: len(data) // 3])  # a truncated batch
    man2 = second.with_name(second.name.removesuffix(".parquet") + ".manifest.json")
    man2.write_text("not json")  # a damaged manifest: its (good) batch must go aside with it
    seg = write(home, [request(time.time() - 5 + i, target="mixed", session="m") for i in range(4)], instance="mix")
    lines = seg.read_bytes().split(b"\n")
    lines.insert(2, b'{"event.id": "x", "broken": \xff\xfe')  # undecodable line in a closed segment
    seg.write_bytes(b"\n".join(lines))
    stray = seg.parent / "*.jsonl"
    stray.write_text("{}\n")
    before = {p: digest(p) for p in (first, second, man2, seg, stray)}

    rc, out, _ = run(capsys, "check", "--json")
    problems = {Path(p["path"]): p for p in json.loads(out)["problems"]}
    assert rc == 1
    assert set(problems) == {first, first.with_name(first.name.removesuffix(".parquet") + ".manifest.json"),
                             second, man2, seg, stray}
    assert problems[seg]["bad_lines"] == [3] and "undecodable" in problems[seg]["why"]
    assert "magic" in problems[first]["why"] or "Parquet" in problems[first]["why"]
    rc, out, _ = run(capsys, "check")
    assert rc == 1 and f"BAD  {first}" in out and "check --fix" in out
    assert all(p.exists() for p in before)  # listing changes nothing

    rc, out, _ = run(capsys, "check", "--fix", "--json")
    moved = {Path(p["path"]): Path(p["moved_to"]) for p in json.loads(out)["problems"]}
    assert rc == 0
    quarantine = home / "events" / "quarantine"
    for original, digest_before in before.items():  # nothing deleted: every byte is in quarantine
        assert moved[original].is_relative_to(quarantine) and digest(moved[original]) == digest_before
    assert not first.exists() and not stray.exists() and not man2.exists() and not second.exists()
    # the segment's good lines stay readable under its own name
    assert [json.loads(x)["mcplens.target"] for x in seg.read_text().splitlines()] == ["mixed"] * 4
    rc, out, _ = run(capsys, "check")
    assert rc == 0 and "all readable" in out
    rc, out, err = run(capsys, "report", "--json")
    assert rc == 0 and err == "" and {r["name"] for r in json.loads(out)} == {"gamma", "mixed"}
    assert LocalStore(home).compact().busy is False and all(p.exists() for p in moved.values())


def test_a_running_writers_live_segment_is_reported_not_moved(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    seg = write(home, [request(time.time() - 1, target="t", session="s")], instance="run", close=False)
    with open(seg, "ab") as f:
        f.write(b"\x00\x00garbage\n")  # a bad line that is not the last one
        f.write(b'{"event.id": "torn')  # a torn last line of a running writer: normal
    assert str(os.getpid()) in seg.name  # its writer (this process) is alive
    rc, out, _ = run(capsys, "check", "--fix", "--json")
    [problem] = json.loads(out)["problems"]
    assert problem["bad_lines"] == [2] and problem["moved_to"] is None and "still running" in problem["why"]
    assert seg.exists()


def test_fixing_a_damaged_rollup_lets_compact_roll_up_again(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    two_batches(home)
    rollup = sorted((home / "events" / "parquet" / "rollups").glob("*.parquet"))[0]
    rollup.write_bytes(b"PAR1 damaged PAR1")
    rc, out, _ = run(capsys, "check", "--fix", "--json")
    [problem] = json.loads(out)["problems"]
    assert rc == 0 and problem["path"] == str(rollup) and Path(problem["moved_to"]).exists()
    assert run(capsys, "compact")[0] == 0  # rolls every batch up again
    store = LocalStore(home)
    assert all(m.rollups and all(p.exists() for p in m.rollup_files()) for m in store.manifests())
    assert store.snapshot().rollups is not None  # the fast path is back
    rc, out, err = run(capsys, "report", "--json")
    assert rc == 0 and err == "" and {r["name"]: r["calls"] for r in json.loads(out)} == {
        "alpha": 7, "beta": 5, "gamma": 3}
