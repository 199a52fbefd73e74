"""The wide corpus (>= 500 items, >= 40 kinds) through all four ways in and both protocol eras.

Ways in: the SDK's ``MCPServer`` and FastMCP instrumented in-process, and ``mcplens proxy`` (the
real CLI, over stdio) in front of each, bare. Eras: the ``initialize`` handshake and the
2026-07-28 stateless era (``mode="auto"``), as tests/capture/test_transports.py picks them.

Every item travels, batched many to a request, in: tool arguments (nested), a ``key: value``
config blob, JSON text, a tool error quoting ``key=value``, prose in a tool error, the framework's
own validation error (which echoes the input), a tool error quoting the payload dict, prompt
arguments and a failing prompt, resource URIs (a template match, an unknown resource whose error
quotes the URI, a handler error quoting it), ``_meta`` and clientInfo. Then every file under the
data directory (the segments, the log exporter's file, Parquet/rollups/manifests after
``mcplens compact``, decompressed through DuckDB), mcplens's log lines and stderr, and the CLI's
output are scanned: no 8-character fragment of any item may appear.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anyio
import mcp
import mcp_types
import pytest
from mcp import StdioServerParameters

import mcplens
from mcplens import cli
from mcplens.pipeline import pipelines
from tests.conftest import REPO, poll, read_events, subprocess_env
from tests.privacy import leak_server
from tests.privacy.corpus import KEYED_LEAKS, SECRETS, SHAPED, WIDE, Leak, kv_line, prose
from tests.privacy.scan import files_text, unmeasured

BATCH = 40
WAYS = [("sdk", "inproc"), ("fastmcp", "inproc"), ("sdk", "proxy"), ("fastmcp", "proxy")]
ERAS = ["legacy", "modern"]
CASES = [(fw, way, era) for fw, way in WAYS for era in ERAS]


def fragments(secret: str) -> set[str]:
    return {secret} if len(secret) < 8 else {secret[i : i + 8] for i in range(len(secret) - 7)}


#: every fragment, once: the wide corpus and the original one (its items travel in arguments)
FRAGMENTS: dict[str, str] = {}
for _item in WIDE:
    for _f in fragments(_item.must_vanish):
        FRAGMENTS.setdefault(_f, _item.label)
for _old in SECRETS:
    # a PEM block's END armour line is public text (and mcplens's own kind name, PRIVATE_KEY, shares words)
    for _f in fragments(_old.secret.split("-----END", 1)[0]):
        FRAGMENTS.setdefault(_f, "old:" + _old.kind)


def chunks(items: list[Leak], n: int = BATCH) -> list[list[Leak]]:
    return [items[k : k + n] for k in range(0, len(items), n)]


SHORT = {f: label for f, label in FRAGMENTS.items() if len(f) < 8}


def leaks_in(text: str) -> list[tuple[str, str]]:
    """Every 8-character window of ``text`` looked up in the fragment table: linear in the text."""
    found = {}
    get = FRAGMENTS.get
    for i in range(len(text) - 7):
        label = get(text[i : i + 8])
        if label is not None:
            found[text[i : i + 8]] = label
    found.update({f: label for f, label in SHORT.items() if f in text})
    return [(label, f) for f, label in found.items()]


async def _quiet(coro: Any) -> Any:
    """A request the server is expected to answer with an error (the point is what gets recorded)."""
    with contextlib.suppress(Exception):
        return await coro
    return None


async def send_everything(c: mcp.Client) -> int:
    """The corpus in every placement; returns how many requests carried it."""
    n = 0
    for batch in chunks(WIDE):
        records = [{i.key or "note": i.value} for i in batch]
        await c.call_tool("lookup", {"payload": {"level1": {"records": records, "page": 1}}})
        await c.call_tool("lookup", {"payload": {"config": "mode: fast\n" + "\n".join(kv_line(i, 0) for i in batch)}})
        await c.call_tool("lookup", {"payload": {"blob": json.dumps({"records": records})}})
        await c.call_tool("report", {"message": "lookup failed: " + " ".join(kv_line(i, 1) for i in batch)})
        await c.call_tool("lookup", {"payload": {"rows": records}, "fail": True})
        await _quiet(c.get_prompt("compose", {"text": "\n".join(kv_line(i, k % 3) for k, i in enumerate(batch))}))
        await _quiet(c.get_prompt("compose", {"text": "; ".join(kv_line(i, 2) for i in batch), "fail": "yes"}))
        meta = {"note": " ".join(i.value for i in batch[:10] if i.key is None), "acme/user": records[0]}
        await c.call_tool("lookup", {"payload": {"page": 2}}, meta=meta)
        n += 8
    for batch in chunks(SHAPED, 20):
        text = " ".join(prose(i, j) for j, i in enumerate(batch))
        await c.call_tool("report", {"message": text})
        await c.call_tool("lookup", {"payload": {"text": text}})
        await _quiet(c.get_prompt("compose", {"text": text}))
        n += 3
    for batch in chunks(WIDE, 20):  # the framework's validation error echoes the input it rejected
        await c.call_tool("typed", {"count": {i.key or "note": i.value for i in batch}})
        n += 1
    for batch in chunks(SHAPED, 10):
        await c.call_tool("typed", {"count": " ".join(prose(i) for i in batch)})
        n += 1
    for j, item in enumerate(SHAPED[::3]):  # resource URIs matching a template, one item each
        q = quote(item.value, safe="")
        await _quiet(c.read_resource([f"user://{q}/profile", f"vault://{q}/open"][j % 2]))
        n += 1
    for batch in chunks(SHAPED, 5):  # unknown resources: the error quotes the whole URI
        segments = "/".join(quote(i.value, safe="") for i in batch)
        await _quiet(c.read_resource(f"db://prod-customers/acme/{segments}/records"))
        n += 1
    for batch in chunks(KEYED_LEAKS[::2], 5):
        segments = "/".join(quote(i.value, safe="") for i in batch)
        await _quiet(c.read_resource(f"file:///home/{segments}/medical/report.pdf"))
        n += 1
    return n


def client_info(batch: list[Leak]) -> mcp_types.Implementation:
    return mcp_types.Implementation(name="agent " + " ".join(i.value for i in batch), version=batch[-1].value)


@contextlib.asynccontextmanager
async def connect(target: Any, era: str, info: mcp_types.Implementation) -> AsyncIterator[mcp.Client]:
    async with mcp.Client(target, client_info=info, mode="legacy" if era == "legacy" else "auto") as c:
        yield c


def proxy_target(framework: str, home: Path, errfile: Path) -> StdioServerParameters:
    """The real CLI over stdio in front of the bare server; its stderr goes to ``errfile``."""
    return StdioServerParameters(
        command="/bin/sh",
        args=["-c", 'exec "$@" 2>>"$LEAK_ERRFILE"', "sh", sys.executable, "-m", "mcplens.cli", "proxy",
              "--home", str(home), "--", sys.executable, "-m", "tests.privacy.leak_server", framework],
        cwd=str(REPO),
        env=subprocess_env(home, LEAK_ERRFILE=str(errfile), MCPLENS_EXPORTERS="log",
                           MCPLENS_LOG_FILE=str(home / "exported.jsonl")),
    )


def exchanges(home: Path) -> list[dict[str, Any]]:
    return [e for e in read_events(home) if e.get("event.kind") in ("request", "notification")]


def _health_by_instance(home: Path) -> list[list[dict[str, Any]]]:
    by: dict[str, list[dict[str, Any]]] = {}
    for e in read_events(home, health=True):
        if e.get("event.kind") == "mcplens.health":
            by.setdefault(str(e.get("mcplens.instance.id")), []).append(e)
    return list(by.values())


# Rollup columns that hold DuckDB ``hash()`` of a pseudonymous session key (and of a call's
# target and redacted arguments): 20-digit integers mcplens makes itself, whose random digits can hold
# any 8-digit run (``12016407778436586459`` once matched a corpus card fragment in CI).
HASHED_KEYS = frozenset({"sk", "loopkey"})


def parquet_text(home: Path) -> str:
    """Parquet is compressed: read every file back through DuckDB and render its rows as text."""
    import duckdb

    out = []
    con = duckdb.connect()
    for path in Path(home).rglob("*.parquet"):
        source = f"read_parquet('{path}')"
        kept = [
            f'"{name}"'
            for name, kind, *_ in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()
            if not (name in HASHED_KEYS and kind == "UBIGINT")
        ]
        if kept:
            rows = con.execute(f"SELECT {', '.join(kept)} FROM {source}").fetchall()
            out.append(repr([unmeasured(r) for r in rows]))
    return "\n".join(out)


def _json_unmeasured(text: str) -> str:
    """``--json`` output (one document, or JSON lines) without the rows' measured top-level floats
    (``duration_s``, ``p95_ms``...), for the reason :func:`_unmeasured` gives; other text unchanged."""
    try:
        docs = [json.loads(text)]
    except ValueError:
        docs = []
        for line in text.splitlines():
            try:
                docs.append(json.loads(line))
            except ValueError:
                docs.append(line)
    out = []
    for doc in docs:
        rows = doc if isinstance(doc, list) else [doc]
        out += [json.dumps(unmeasured(r), ensure_ascii=False) if isinstance(r, dict) else str(r) for r in rows]
    return "\n".join(out)


def cli_output(home: Path, capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    out = []
    for argv in (["tail", "--once", "-n", "100000"], ["report"], ["sessions"], ["health"], ["insights"],
                 ["tail", "--once", "--json", "-n", "100000"], ["report", "--json"], ["compact"]):
        cli.main([*argv, "--home", str(home)])
        got = capsys.readouterr()
        out += [_json_unmeasured(got.out) if "--json" in argv else got.out, got.err]
    return "\n".join(out)


@pytest.mark.parametrize(("framework", "way", "era"), CASES, ids=["-".join(c) for c in CASES])
def test_wide_corpus_leaks_nothing(
    framework: str, way: str, era: str, home: Path, tmp_path: Path,
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.DEBUG, logger="mcplens")
    errfile = tmp_path / "proxy-stderr.txt"
    infos = [client_info(b) for b in chunks(SHAPED, 30)]

    async def main() -> int:
        with anyio.fail_after(240):
            return await drive()

    async def drive() -> int:
        if way == "inproc":
            server = leak_server.BUILDERS[framework]()
            mcplens.instrument(server)
            target: Any = server if framework == "sdk" else server._mcp_server
            n = 0
            for info in infos:  # one connection per clientInfo batch: in-process, they are cheap
                async with connect(target, era, info) as c:
                    if info is infos[0]:
                        n += await send_everything(c)
                    await c.call_tool("lookup", {"payload": {"page": 1}})
            return n
        async with connect(proxy_target(framework, home, errfile), era, infos[0]) as c:
            return await send_everything(c)

    sent = anyio.run(main)
    mcplens.flush()
    # the proxy writes its last batch as it exits after the client closed the pipe: poll for it
    events = poll(lambda: len(found := exchanges(home)) >= sent and found, timeout=30.0) or exchanges(home)
    for pipeline in pipelines():  # close this test's writer: its live segment becomes compactable
        if Path(pipeline.settings.home) == home:
            pipeline.close()
    # every request was recorded, or shed and counted by a writer starved of CPU (a busy test machine)
    dropped = sum(max((h.get("mcplens.health.dropped") or 0) for h in hs) for hs in _health_by_instance(home))
    assert len(events) + dropped >= sent and len(events) >= 0.9 * sent, (len(events), dropped, sent)
    assert any(e.get("mcplens.redactions") for e in events)
    if way == "proxy":
        assert all(e.get("mcplens.capture") == "proxy" for e in events if e.get("event.kind") == "request")
    if way == "proxy":
        assert (home / "exported.jsonl").stat().st_size > 0, "the log exporter wrote nothing"

    texts = {
        "files": files_text(home),
        "log lines": "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("mcplens")),
        "stderr": errfile.read_text("utf-8", "replace") if errfile.exists() else "",
        "cli": cli_output(home, capsys),
        "parquet": parquet_text(home),
    }
    assert texts["parquet"], "compact wrote no Parquet"
    found = {where: leaks_in(text) for where, text in texts.items()}
    found = {k: v for k, v in found.items() if v}
    total = sum(len(v) for v in found.values())
    kinds = sorted({label for v in found.values() for label, _ in v})
    if found:
        dump = Path(os.environ.get("LEAK_DUMP", tmp_path / "leaks.txt"))
        with dump.open("w") as f:
            for where, hits in found.items():
                seen = set()
                for label, frag in hits:
                    if label in seen:
                        continue
                    seen.add(label)
                    at = texts[where].find(frag)
                    f.write(f"{where}\t{label}\t{frag!r}\t{texts[where][max(0, at - 120) : at + 60]!r}\n")
    assert not found, f"{total} fragments leaked, kinds {kinds}, contexts in {dump}"


def test_wide_corpus_size() -> None:
    assert len(WIDE) + len(SECRETS) >= 500 and len(WIDE) >= 500
    assert len({i.label for i in WIDE}) >= 40
    plans = {i.label for i in WIDE if i.label.startswith("phone-")}
    assert len(plans) >= 8, plans
    assert os.environ.get("MCPLENS_DISABLED") is None
