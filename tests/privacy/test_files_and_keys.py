"""Files that hold events are owner-only; the id key is never empty or short, even after a crash."""

from __future__ import annotations

import logging
import multiprocessing
import os
import stat
from pathlib import Path

import anyio
import mcp
import pytest

import mcplens
from mcplens import cli
from mcplens.exporters.log import LogExporter
from mcplens.pipeline import pipelines
from mcplens.privacy import ids
from tests.privacy import leak_server


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_parquet_rollups_and_manifests_are_owner_only(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old = os.umask(0o022)  # the usual umask: files would be 0644 unless created otherwise
    try:
        server = leak_server.build_sdk()
        mcplens.instrument(server)

        async def main() -> None:
            async with mcp.Client(server, mode="legacy") as c:
                for i in range(3):
                    await c.call_tool("lookup", {"payload": {"page": i}})

        anyio.run(main)
        mcplens.flush()
        for p in pipelines():
            if Path(p.settings.home) == home:
                p.close()
        assert cli.main(["compact", "--home", str(home)]) == 0
    finally:
        os.umask(old)
    capsys.readouterr()
    parquet = [p for p in (home / "events").rglob("*.parquet")]
    manifests = [p for p in (home / "events").rglob("*.json")]
    assert parquet and manifests, sorted(str(p) for p in home.rglob("*"))
    assert any("rollup" in str(p) for p in parquet), "no rollup files to check"
    for p in [*parquet, *manifests, home / "id.key"]:
        assert mode(p) == 0o600, (p, oct(mode(p)))


def test_the_log_exporters_file_is_owner_only_also_after_rotation(tmp_path: Path) -> None:
    path = tmp_path / "events.log"
    old = os.umask(0o022)
    logger = logging.getLogger("tests.privacy.log-exporter")
    try:
        sink = LogExporter(path, logger=logger)
        sink.setup()
        sink.export([{"mcp.method.name": "ping", "mcplens.status": "ok"}])
        assert mode(path) == 0o600
        path.rename(tmp_path / "events.log.1")  # logrotate moves it: the handler re-creates it
        sink.export([{"mcp.method.name": "ping", "mcplens.status": "ok"}])
        assert path.exists() and mode(path) == 0o600
        sink.shutdown()
    finally:
        os.umask(old)


@pytest.mark.parametrize("content", [b"", b"\x00" * 5, b"short"])
def test_an_empty_or_short_key_file_is_replaced(tmp_path: Path, content: bytes,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MCPLENS_ID_KEY", raising=False)
    (tmp_path / ids.KEY_FILE).write_bytes(content)
    key, persisted = ids.load_or_create_key(tmp_path)
    assert persisted and key is not None and len(key) == ids.KEY_BYTES
    assert (tmp_path / ids.KEY_FILE).read_bytes() == key
    assert mode(tmp_path / ids.KEY_FILE) == 0o600
    assert ids.load_or_create_key(tmp_path)[0] == key  # stable from then on
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def _load(home: str, q: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    q.put(ids.load_or_create_key(Path(home))[0])


def test_processes_racing_to_create_the_key_agree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MCPLENS_ID_KEY", raising=False)
    (tmp_path / ids.KEY_FILE).write_bytes(b"")  # a crash left an empty file behind
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    procs = [ctx.Process(target=_load, args=(str(tmp_path), q)) for _ in range(6)]
    for p in procs:
        p.start()
    keys = [q.get(timeout=30) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    assert len(set(keys)) == 1 and len(keys[0]) == ids.KEY_BYTES
    assert (tmp_path / ids.KEY_FILE).read_bytes() == keys[0]


def test_a_short_key_in_the_environment_means_no_ids(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MCPLENS_ID_KEY", "abc")
    assert ids.load_or_create_key(home) == (None, False)
    server = leak_server.build_sdk()
    mcplens.instrument(server)

    async def main() -> None:
        async with mcp.Client(server, mode="legacy") as c:
            await c.call_tool("lookup", {"payload": {"page": 1}})

    anyio.run(main)
    mcplens.flush()
    from tests.conftest import read_events

    events = [e for e in read_events(home) if e.get("event.kind") == "request"]
    assert events and all("mcp.session.id" not in e and "mcplens.client.id" not in e for e in events)
