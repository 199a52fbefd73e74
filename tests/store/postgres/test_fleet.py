"""Eight replicas write one PostgreSQL database at once (SDK and FastMCP, stdio and streamable HTTP),
and the database is stopped for 20 s in the middle: every tool call still succeeds, and afterwards
every call is in the database exactly once (spooled while it was down, replayed after)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import anyio
import mcp
import mcp_types

from mcplens.store.postgres import connect
from mcplens.store.postgres.writer import spool_home
from tests.conftest import REPO, RawStdioClient, free_port, poll, stop, subprocess_env, wait_port
from tests.store.postgres.conftest import Database

MODULES = {"sdk": "tests.servers.sdk_server", "fastmcp": "tests.servers.fastmcp_server"}
REPLICAS = [(f, t) for f in ("sdk", "fastmcp") for t in ("stdio", "http")] * 2
OUTAGE = 20.0  # seconds the database is down (the figure)
PACE = 0.02  # seconds between one client's calls: load shaping on a shared 2-core machine, not synchronisation


class Replica:
    def __init__(self, n: int, framework: str, transport: str, home: Path, store: str) -> None:
        self.n, self.framework, self.transport, self.home = n, framework, transport, home
        self.name = f"agent-{n}"
        self.ok = 0
        self.errors: list[BaseException] = []
        self.proc: subprocess.Popen[bytes] | None = None
        self.raw: RawStdioClient | None = None
        env = {"MCPLENS_STORE": store}
        if transport == "stdio":
            self.raw = RawStdioClient.module(MODULES[framework], home, **env)
        else:
            port = free_port()
            self.proc = subprocess.Popen([sys.executable, "-m", MODULES[framework], "--http", str(port)], cwd=REPO,
                                         env=subprocess_env(home, **env), stdout=subprocess.DEVNULL,
                                         stderr=subprocess.PIPE)
            wait_port(port, self.proc, 150)
            self.url = f"http://127.0.0.1:{port}/mcp"

    def drive(self, halt: threading.Event) -> None:
        try:
            if self.raw is not None:
                self.raw.handshake(client=self.name)
                while not halt.is_set():
                    reply = self.raw.ask("tools/call", {"name": "add", "arguments": {"a": self.ok, "b": 1}})
                    assert reply["result"]["isError"] is False, reply
                    self.ok += 1
                    time.sleep(PACE)
            else:
                anyio.run(self._http, halt)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.errors.append(exc)

    async def _http(self, halt: threading.Event) -> None:
        info = mcp_types.Implementation(name=self.name, version="1.0")
        async with mcp.Client(self.url, client_info=info) as c:
            while not halt.is_set():
                result = await c.call_tool("add", {"a": self.ok, "b": 1})
                assert not result.is_error, result
                self.ok += 1
                await anyio.sleep(PACE)

    def kill(self) -> None:
        if self.raw is not None:
            self.raw.kill()
        elif self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def close(self) -> None:
        if self.raw is not None:
            self.raw.close_stdin()
            assert self.raw.wait(timeout=60) == 0
        elif self.proc is not None:
            stop(self.proc, timeout=60)


def _calls_by_client(pg: Database) -> Counter[str]:
    try:
        conn = connect(pg.admin)
    except ConnectionError:
        return Counter()
    try:
        rows = conn.execute("SELECT client_name, count(*) FROM mcplens.events WHERE method = 'tools/call' "
                            "GROUP BY 1").fetchall()
        return Counter({r[0]: int(r[1]) for r in rows})
    finally:
        conn.close()


def _spooled(homes: list[Path]) -> int:
    return sum(1 for h in homes for _ in (spool_home(h) / "events").rglob("*.jsonl"))


def test_eight_replicas_and_a_20s_outage_every_call_exactly_once(pg: Database, tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(len(REPLICAS)) as pool:  # start them side by side: start-up is most of the wait
        futures = [pool.submit(Replica, n, f, t, tmp_path / f"replica{n}", pg.writer)
                   for n, (f, t) in enumerate(REPLICAS)]
    started = [fut.result() for fut in futures if fut.exception() is None]
    if len(started) < len(REPLICAS):  # one failed to start: stop the others before failing
        for r in started:
            r.kill()
        raise next(fut.exception() for fut in futures if fut.exception() is not None)  # type: ignore[misc]
    replicas = started
    homes = [r.home for r in replicas]
    halt = threading.Event()
    threads = [threading.Thread(target=r.drive, args=(halt,), daemon=True) for r in replicas]
    try:
        for t in threads:
            t.start()
        names = {r.name for r in replicas}
        assert poll(lambda: set(_calls_by_client(pg)) >= names, 90, 0.2), "every replica's first events in PostgreSQL"

        pg.cluster.stop("fast")
        down_at = {r.name: r.ok for r in replicas}
        halt.wait(OUTAGE)  # the outage itself: the clients keep calling meanwhile
        during = {r.name: r.ok - down_at[r.name] for r in replicas}
        failed = {r.name: r.errors for r in replicas if r.errors}
        assert not failed, failed
        assert all(n > 0 for n in during.values()), f"tool calls stalled while PostgreSQL was down: {during}"
        assert _spooled(homes) > 0, "nothing was spooled while the database was down"
        pg.cluster.start()

        # keep calling until every replica has replayed its spool (the writers reconnect with backoff)
        assert poll(lambda: _spooled(homes) == 0, 60, 0.2), "the spools did not drain"
    finally:
        halt.set()
        if not pg.cluster.running:  # failed mid-outage: later tests share the cluster
            pg.cluster.start()
        for t in threads:
            t.join(timeout=60)
        closing: list[BaseException] = []
        for r in replicas:  # every one, even after one fails to exit cleanly
            try:
                r.close()
            except BaseException as exc:  # noqa: BLE001 - raised below, after the others are stopped
                r.kill()
                closing.append(exc)
        assert not closing, closing
    errors = [e for r in replicas for e in r.errors]
    assert not errors, errors
    assert _spooled(homes) == 0

    made = {r.name: r.ok for r in replicas}
    stored = _calls_by_client(pg)
    assert dict(stored) == made, "a call is missing or stored twice"
    conn = connect(pg.admin)
    try:
        total, distinct = conn.execute("SELECT count(*), count(DISTINCT event_id) FROM mcplens.events").fetchone()
        assert total == distinct
        instances = conn.execute("SELECT count(DISTINCT instance_id) FROM mcplens.events "
                                 "WHERE method = 'tools/call'").fetchone()[0]
        assert instances == len(REPLICAS)
        # the rollup job over the run (its hours closed: `now` two hours on), then the reader's
        # report from those batches counts each stored call once
        from mcplens.store.postgres import mirror
        from mcplens.store.postgres.store import PostgresStore

        job = mirror.roll_up(conn, mirror.mirror_home(conn, tmp_path / "job"), now=time.time() + 7200, grace=0)
        assert job["events"] == total and job["rolled_until"] > time.time(), job
        store = PostgresStore(pg.reader)
        calls = sum(r["calls"] for r in store.tool_table() if r["method"] == "tools/call")
        store.close()
        assert store.tail_events == 0 and calls == sum(made.values()), "the rollups count each stored call once"
    finally:
        conn.close()
