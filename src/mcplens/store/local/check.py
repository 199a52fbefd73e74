"""``mcplens check``: find the files in a data directory that cannot be read, and move them aside.

Readers already leave a bad file out and name it (store/local/reader.py); this walks everything once,
thoroughly, so an operator can see what is damaged and fix it. Nothing is ever deleted: ``--fix``
moves a file into ``events/quarantine/<time>/`` under its own relative path. A segment that is
mostly readable keeps its good lines: the original goes to quarantine and the good lines are
written back under the same name, so no readable event is lost.

What counts as unreadable:
* a manifest that is not JSON or lacks its fields (its Parquet batch goes aside with it, or
  compaction would take the batch for an uncommitted leftover);
* a Parquet batch (or rollup file) that DuckDB cannot read in full, or that a manifest names
  but which is gone;
* a segment line that is not UTF-8 or not a JSON object (a torn last line of a segment whose
  writer is still running is normal and not counted);
* a stray file whose name contains glob characters (never written by mcplens).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcplens.store import engine
from mcplens.store.local.files import MANIFEST_SUFFIX, _path_lit, pid_alive, segment_pid
from mcplens.store.local.layout import CLOSED, LIVE, PARQUET, events_dir
from mcplens.store.local.reader import LocalStore

QUARANTINE = "quarantine"


@dataclass
class Problem:
    path: Path
    why: str
    moved_to: Path | None = None
    #: a segment's bad line numbers (1-based); its good lines stay readable
    bad_lines: list[int] = field(default_factory=list)
    #: for a rollup file: the manifest that lists it (fixing drops the batch's rollups from it,
    #: so the next ``mcplens compact`` rolls every batch up again)
    manifest: Path | None = None


@dataclass
class CheckResult:
    files: int
    problems: list[Problem]
    quarantine: Path

    def to_dict(self) -> dict[str, Any]:
        return {
            "files": self.files,
            "quarantine": str(self.quarantine),
            "problems": [
                {"path": str(p.path), "why": p.why, "moved_to": None if p.moved_to is None else str(p.moved_to),
                 **({"bad_lines": p.bad_lines} if p.bad_lines else {})}
                for p in self.problems
            ],
        }


def _segment_problem(path: Path) -> tuple[str, list[int]] | None:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None  # compacted or renamed meanwhile: not damage
    lines = data.split(b"\n")
    torn_ok = path.parent.name == LIVE and _writer_alive(path)
    bad = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if i == len(lines) and torn_ok:  # the running writer's last, unterminated line
            continue
        try:
            obj = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            bad.append(i)
            continue
        if not isinstance(obj, dict):
            bad.append(i)
    if not bad:
        return None
    shown = ", ".join(map(str, bad[:10])) + (" ..." if len(bad) > 10 else "")
    return f"{len(bad)} undecodable line(s) (line {shown})", bad


def _writer_alive(path: Path) -> bool:
    pid = segment_pid(path.name)
    return pid is not None and pid_alive(pid)


def _parquet_problem(con: Any, path: Path) -> str | None:
    duckdb = engine.duckdb()
    if not path.exists():
        return "missing: its manifest names it but the file is gone"
    try:
        con.execute(f"SELECT max(COLUMNS(*)) FROM read_parquet({_path_lit(path)})").fetchall()
    except duckdb.Error as e:
        return str(e).splitlines()[0][:200]
    return None


def check(home: Path, *, fix: bool = False) -> CheckResult:
    root = events_dir(home)
    quarantine = root / QUARANTINE / time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    problems: list[Problem] = []
    files = 0
    store = LocalStore(home)
    manifests = store.manifests()  # damaged ones land in store.bad
    pq = root / PARQUET
    for path, why in sorted(store.bad.items()):
        if path.name.endswith(MANIFEST_SUFFIX):
            # the batch first: moved the other way round, a compaction in between would take the
            # uncommitted batch for a leftover and delete it
            batch = pq / (path.name.removesuffix(MANIFEST_SUFFIX) + ".parquet")
            if batch.exists():
                problems.append(Problem(batch, "its manifest is unreadable, so the batch is not read"))
            problems.append(Problem(path, why))
    files += len(store._manifest_names())  # noqa: SLF001
    con = engine.duckdb().connect()
    try:
        for m in manifests:
            for p in [m.parquet, *m.rollup_files()]:
                files += 1
                why = _parquet_problem(con, p)
                if why is not None:
                    problems.append(Problem(p, why, manifest=None if p == m.parquet else
                                            pq / (m.batch + MANIFEST_SUFFIX)))
                    if p == m.parquet:  # the manifest goes with it: it names a file no reader can use
                        problems.append(Problem(pq / (m.batch + MANIFEST_SUFFIX), "names an unreadable batch"))
    finally:
        con.close()
    for d in (LIVE, CLOSED):
        try:
            names = sorted(os.listdir(root / d))
        except FileNotFoundError:
            continue
        for name in names:
            p = root / d / name
            if name.startswith(".") or not name.endswith(".jsonl") or not p.is_file():
                continue
            files += 1
            if any(c in name for c in "*?["):
                problems.append(Problem(p, "stray file: its name has glob characters (not written by mcplens)"))
                continue
            found = _segment_problem(p)
            if found is not None:
                problems.append(Problem(p, found[0], bad_lines=found[1]))
    if fix:
        for pr in problems:
            _quarantine(root, quarantine, pr)
    return CheckResult(files, problems, quarantine)


def _quarantine(root: Path, quarantine: Path, pr: Problem) -> None:
    """Move the file aside (same relative path under ``quarantine``); for a segment with some bad
    lines, write its good lines back under its own name. A live segment of a running writer is
    left alone: it is still being appended to."""
    if not pr.path.exists():
        return
    if pr.path.parent.name == LIVE and _writer_alive(pr.path):
        pr.why += " (left in place: its writer is still running)"
        return
    dest = quarantine / pr.path.relative_to(root)
    dest.parent.mkdir(parents=True, exist_ok=True)
    good: bytes | None = None
    if pr.bad_lines:
        bad = set(pr.bad_lines)
        lines = pr.path.read_bytes().split(b"\n")
        good = b"".join(line + b"\n" for i, line in enumerate(lines, 1) if i not in bad and line.strip())
    os.replace(pr.path, dest)
    pr.moved_to = dest
    if pr.manifest is not None and pr.manifest.exists():
        from mcplens.store.local.compact import _write_manifest

        data = json.loads(pr.manifest.read_text("utf-8"))
        data["rollups"] = None  # the batch's events are intact; its rollups are redone by compact
        _write_manifest(pr.manifest, data)
    if good:
        tmp = pr.path.with_name("." + pr.path.name + ".tmp")
        tmp.write_bytes(good)
        os.replace(tmp, pr.path)
