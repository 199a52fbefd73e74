#!/usr/bin/env python
"""Cost of the redaction engine per event, against ``json.dumps`` and the previous release's redactor.

Four argument objects: a typical ~200-byte one and a ~5 KB one, each clean and with hits
(emails, phones, a card, API keys, a sensitive key). For every object, ``Redactor.value``, the
previous release's ``Redactor.value`` (``--baseline-ref``, default ``6e4463d``, the commit before the wide-corpus work:
its ``redact.py`` and
``patterns.py`` extracted with ``git show`` into a temporary package, imported under another
name) and ``json.dumps`` run interleaved in short blocks, in a fresh random order each round,
inside one process; the figure is the median over rounds of the per-call mean (µs of this thread's
CPU time, which leaves out time the CPU spent on other processes; ``--wall`` for wall clock); the
ratios are this redactor ÷ json.dumps and this redactor ÷ the previous one, of those medians.

Run ``.venv/bin/python bench/privacy.py``; ``--write-results`` appends a section to
``bench/RESULTS.md`` with the date (``date -u``), ``uname -srm`` and the CPU model.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
from pathlib import Path
from time import perf_counter_ns, thread_time_ns
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

from mcplens.privacy.redact import Redactor  # noqa: E402

RESULTS = HERE / "RESULTS.md"
#: the release before the wide-corpus privacy work (a fixed commit: `main` moves as work lands)
BASELINE_REF = "6e4463d"
GOAL_US = 20.0
#: this redactor may cost at most this much more than the previous release's on a 200-byte object
MAX_SLOWDOWN = 1.20


def previous_redactor(ref: str) -> Any:
    """The ``Redactor`` class of git ``ref``, loaded from a temporary package ``mcplens_prev_privacy``."""
    import importlib
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="mcplens-prev-"))
    pkg = root / "mcplens_prev_privacy"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    for name in ("patterns", "redact"):
        src = subprocess.run(["git", "show", f"{ref}:src/mcplens/privacy/{name}.py"], cwd=HERE.parent,
                             capture_output=True, text=True, check=True).stdout
        src = src.replace("from mcplens.privacy import patterns", "from mcplens_prev_privacy import patterns")
        (pkg / f"{name}.py").write_text(src)
    sys.path.insert(0, str(root))
    return importlib.import_module("mcplens_prev_privacy.redact").Redactor

SMALL_CLEAN: dict[str, Any] = {
    "query": "SELECT id, total FROM orders WHERE status = 'open' LIMIT 50",
    "database": "analytics",
    "timeout_s": 30,
    "include_deleted": False,
    "tags": ["report", "weekly"],
    "requested_by": "dashboard",
}
SMALL_HITS: dict[str, Any] = {
    "to": "alice.smith@example.com",
    "subject": "Invoice 2024-0012 overdue",
    "body": "Call me at +1 415 555 0134 today",
    "api_key": "sk-live-9f8e7d6c5b4a",
    "amount": 120.5,
    "cc": ["bob@example.org"],
}


def _row(i: int, hits: bool) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": f"ORD-2024-{i:06d}",
        "status": "shipped" if i % 3 else "pending",
        "total": round(19.99 * (i % 7 + 1), 2),
        "items": [{"sku": f"SKU-AB-{1000 + i}", "qty": i % 4 + 1}],
        "note": "Leave the parcel at the front desk, ring twice.",
        "created_at": f"2024-03-{i % 28 + 1:02d}T10:{i % 60:02d}:00Z",
    }
    if hits and i % 5 == 0:
        row["note"] = f"Customer alice{i}@example.com asked for a callback on +44 20 7946 {i:04d}"
        row["card"] = "4111 1111 1111 1111"
        row["password"] = "hunter2hunter2"
    return row


LARGE_CLEAN: dict[str, Any] = {"rows": [_row(i, False) for i in range(22)], "page": 1, "per_page": 22}
LARGE_HITS: dict[str, Any] = {"rows": [_row(i, True) for i in range(22)], "page": 1, "per_page": 22}
CASES = {
    "200 B clean": SMALL_CLEAN,
    "200 B with hits": SMALL_HITS,
    "5 KB clean": LARGE_CLEAN,
    "5 KB with hits": LARGE_HITS,
}


def run(rounds: int, block: int, seed: int, wall: bool = False, ref: str = BASELINE_REF) -> list[dict[str, Any]]:
    clock = perf_counter_ns if wall else thread_time_ns
    redactor = Redactor()
    previous = previous_redactor(ref)()
    rng = random.Random(seed)
    contenders = []
    for name, obj in CASES.items():
        contenders.append((name, "redact", lambda o=obj: redactor.value(o)))
        contenders.append((name, "previous", lambda o=obj: previous.value(o)))
        contenders.append((name, "json.dumps", lambda o=obj: json.dumps(o)))
    samples: dict[tuple[str, str], list[float]] = {(n, k): [] for n, k, _ in contenders}
    for _, _, fn in contenders:  # warm up
        for _ in range(block):
            fn()
    for _ in range(rounds):
        rng.shuffle(contenders)
        for name, kind, fn in contenders:
            t0 = clock()
            for _ in range(block):
                fn()
            samples[(name, kind)].append((clock() - t0) / block / 1000)
    rows = []
    for name, obj in CASES.items():
        r = statistics.median(samples[(name, "redact")])
        p = statistics.median(samples[(name, "previous")])
        j = statistics.median(samples[(name, "json.dumps")])
        _, counts = redactor.value(obj)
        _, prev_counts = previous.value(obj)
        rows.append(
            {
                "case": name,
                "bytes": len(json.dumps(obj)),
                "redact_us": r,
                "previous_us": p,
                "dumps_us": j,
                "ratio": r / j,
                "vs_previous": r / p,
                "redactions": sum(counts.values()),
                "previous_redactions": sum(prev_counts.values()),
            }
        )
    return rows


def corpus_figures(ref: str = BASELINE_REF) -> dict[str, Any]:
    """Leaks and over-redaction of this redactor and the previous release's on the test corpora.

    Every item of the wide corpus (tests/privacy/corpus.py) in every placement of
    tests/privacy/test_wide_unit.py, and the benign corpus's values; the same code for both
    redactors, so the two rows are a before/after on the same data.
    """
    sys.path.insert(0, str(HERE.parent))
    from tests.privacy import test_wide_unit as W
    from tests.privacy.corpus import BENIGN_WIDE, WIDE, benign_by_kind

    out: dict[str, Any] = {"items": len(WIDE), "kinds": len({i.label for i in WIDE}),
                           "benign": len(BENIGN_WIDE), "benign_kinds": len(benign_by_kind(BENIGN_WIDE))}
    for label, red in (("this", Redactor()), ("previous", previous_redactor(ref)())):
        W.R = red
        placements = leaks = 0
        leaked_kinds = set()
        for i, item in enumerate(WIDE):
            for text in W.placements(item, i).values():
                placements += 1
                if any(f in text for f in W.fragments(item.must_vanish)):
                    leaks += 1
                    leaked_kinds.add(item.label)
        altered = sum(1 for v in BENIGN_WIDE if red.value(v)[0] != v)
        out[label] = {"placements": placements, "leaks": leaks, "leaked_kinds": len(leaked_kinds),
                      "over_redacted": altered}
    return out


def corpus_table(c: dict[str, Any]) -> str:
    lines = [
        f"Wide corpus: {c['items']} items of {c['kinds']} kinds; benign corpus: {c['benign']} values of "
        f"{c['benign_kinds']} kinds.\n",
        "| redactor | placements | leaking placements | kinds leaking | benign values altered |",
        "|---|---:|---:|---:|---:|",
    ]
    for label in ("previous", "this"):
        r = c[label]
        lines.append(f"| {label} | {r['placements']} | {r['leaks']} | {r['leaked_kinds']} | "
                     f"{r['over_redacted']} ({r['over_redacted'] / c['benign']:.2%}) |")
    return "\n".join(lines)


def machine() -> str:
    uname = subprocess.run(["uname", "-srm"], capture_output=True, text=True).stdout.strip()
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"`{uname}`, nproc {os.cpu_count()}, {cpu}"


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| case | JSON bytes | redactions (previous) | redactor µs/event | previous µs | vs previous "
        "| json.dumps µs | vs json.dumps |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['case']} | {r['bytes']} | {r['redactions']} ({r['previous_redactions']}) | {r['redact_us']:.2f} "
            f"| {r['previous_us']:.2f} | {r['vs_previous']:.2f}× | {r['dumps_us']:.2f} | {r['ratio']:.1f}× |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=200)
    ap.add_argument("--block", type=int, default=50)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--wall", action="store_true", help="wall clock instead of this thread's CPU time")
    ap.add_argument("--baseline-ref", default=BASELINE_REF,
                    help=f"git ref of the previous release (default: {BASELINE_REF})")
    ap.add_argument("--write-results", action="store_true")
    ap.add_argument("--note", default="", help="a line added to the RESULTS.md section (e.g. the machine was shared)")
    args = ap.parse_args()
    rows = run(args.rounds, args.block, args.seed, args.wall, args.baseline_ref)
    small = rows[0]["redact_us"]
    verdict = "meets" if small < GOAL_US else "misses"
    worst = max(rows[0]["vs_previous"], rows[1]["vs_previous"])
    slow_verdict = "meets" if worst <= MAX_SLOWDOWN else "misses"
    text = table(rows)
    corpus = corpus_table(corpus_figures(args.baseline_ref))
    print(text)
    print()
    print(corpus)
    print(f"\nGoal (< {GOAL_US:.0f} µs for a clean 200-byte object): {verdict} it at {small:.2f} µs")
    print(f"Goal (200-byte objects at most {MAX_SLOWDOWN:.2f}× the previous release): {slow_verdict} it at "
          f"{worst:.2f}×")
    if args.write_results:
        date = subprocess.run(["date", "-u"], capture_output=True, text=True).stdout.strip()
        section = (
            f"\n### Privacy redactor (`bench/privacy.py`) — run {date}\n\n"
            f"- Machine: {machine()}\n"
            + (f"- {args.note}\n" if args.note else "")
            +
            f"- CPython {platform.python_version()}; {args.rounds} rounds × {args.block} calls per contender, "
            f"blocks shuffled every round (seed {args.seed}); figure = median over rounds of the per-call mean, "
            f"{'wall clock' if args.wall else 'thread CPU time'}\n\n"
            f"{text}\n\n"
            f"{corpus}\n\n"
            f"- Goal (< {GOAL_US:.0f} µs for a 200-byte argument object): **{verdict}** it at {small:.2f} µs clean, "
            f"{rows[1]['redact_us']:.2f} µs with hits\n"
            f"- Goal (200-byte objects at most {MAX_SLOWDOWN:.2f}× the previous release, `{args.baseline_ref}`, "
            f"measured in the same run): **{slow_verdict}** it at {worst:.2f}× (worst of clean and with hits)\n"
        )
        with RESULTS.open("a", encoding="utf-8") as f:
            f.write(section)
        print(f"appended to {RESULTS}")


if __name__ == "__main__":
    main()
