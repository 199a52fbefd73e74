"""The structured-logging exporter: JSON lines on a routable logger, never on a stdio server's stdout."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import anyio
import mcp

import mcplens
from mcplens.exporters.log import LOGGER, JsonFormatter, LogExporter
from tests.conftest import REPO, subprocess_env
from tests.exporters import server as exporter_server


def test_events_become_json_lines_with_fields_in_extra(home: Path, tmp_path: Path) -> None:
    log_file = tmp_path / "logs" / "mcplens.jsonl"
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    keep = Keep()
    server = exporter_server.build()
    mcplens.instrument(server, exporters=["log"], log_file=str(log_file))
    logging.getLogger(LOGGER).addHandler(keep)
    try:
        async def main() -> None:
            async with mcp.Client(server, mode="legacy") as c:
                await c.call_tool("add", {"a": 1, "b": 2})
                await c.call_tool("fail", {})

        anyio.run(main)
        mcplens.flush()
    finally:
        logging.getLogger(LOGGER).removeHandler(keep)
    lines = [json.loads(line) for line in log_file.read_text().splitlines()]
    add = next(x for x in lines if x.get("gen_ai.tool.name") == "add")
    assert add["logger"] == "mcplens.events" and add["level"] == "INFO"
    assert add["message"].startswith("tools/call add ok ")
    assert add["mcplens.status"] == "ok" and add["@timestamp"].endswith("Z")
    assert add["mcplens.request.arguments"] == {"a": 1, "b": 2}
    fail = next(x for x in lines if x.get("gen_ai.tool.name") == "fail")
    assert fail["level"] == "WARNING" and fail["error.type"] == "tool_error"
    rec = next(r for r in records if getattr(r, "gen_ai.tool.name", None) == "add")
    assert rec.__dict__["mcp.method.name"] == "tools/call" and rec.mcplens_event["event.id"]


def test_formatter_and_an_application_configured_logger(tmp_path: Path) -> None:
    logger = logging.getLogger("tests.mcplens.custom")
    handler = logging.FileHandler(tmp_path / "app.log")
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)
    try:
        exporter = LogExporter(logger=logger)
        exporter.setup()  # the application's handler is used, none is added
        assert exporter._handler is None
        exporter.export([{"event.kind": "request", "mcp.method.name": "ping", "mcplens.status": "ok",
                           "duration_s": 0.002, "message": "not a LogRecord clash"}])
    finally:
        logger.removeHandler(handler)
        handler.close()
    line = json.loads((tmp_path / "app.log").read_text())
    assert line["message"] == "ping ok 2.0 ms" and line["mcp.method.name"] == "ping"


def test_stdio_server_stdout_stays_protocol_only(home: Path) -> None:
    messages = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "add", "arguments": {"a": 2, "b": 3}}},
    ]
    err = home.parent / "stderr.txt"
    with err.open("wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.exporters.server"], cwd=REPO,
            env=subprocess_env(home, MCPLENS_EXPORTERS="log"),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr,
        )
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(b"".join(json.dumps(m).encode() + b"\n" for m in messages))
        proc.stdin.flush()
        lines = [proc.stdout.readline(), proc.stdout.readline()]
        proc.stdin.close()
        lines += proc.stdout.read().splitlines()
        proc.wait(timeout=30)
    out = [json.loads(line) for line in lines if line.strip()]
    assert [m.get("id") for m in out] == [1, 2] and all(m["jsonrpc"] == "2.0" for m in out)
    logged = [json.loads(line) for line in err.read_bytes().splitlines() if line.startswith(b'{"@timestamp"')]
    assert any(x.get("gen_ai.tool.name") == "add" for x in logged)  # the log lines went to stderr
