"""A bare line-based JSON-RPC server (standard library only) that misbehaves on request.

The proxy tests need a peer they fully control: one that logs every byte it received and sent
(``RAW_SERVER_LOG``: a JSON file written on exit), answers fast, and on command sends garbage,
invalid UTF-8, a 10 MB reply, a batch, requests and notifications of its own, a reply without a
newline, or crashes in the middle of a call. Run as ``python -m tests.servers.raw_server``.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
from typing import Any

received = hashlib.sha256()
sent = hashlib.sha256()
counts = {"received": 0, "sent": 0}


def log() -> None:
    path = os.environ.get("RAW_SERVER_LOG")
    if path:
        with open(path, "w") as f:
            json.dump({"received_sha256": received.hexdigest(), "sent_sha256": sent.hexdigest(), **counts}, f)


def write(data: bytes) -> None:
    sent.update(data)
    counts["sent"] += len(data)
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def reply(rid: Any, result: Any) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": rid, "result": result}, separators=(",", ":")).encode() + b"\n"


def handle(msg: Any) -> bytes | None:
    if not isinstance(msg, dict) or "method" not in msg or "id" not in msg:
        return None
    method, rid, params = msg["method"], msg["id"], msg.get("params") or {}
    if method == "initialize":
        version = params.get("protocolVersion", "2025-03-26")
        return reply(rid, {"protocolVersion": version, "capabilities": {"tools": {}},
                           "serverInfo": {"name": "raw-fixture", "version": "0.0.1"}})
    if method == "tools/call":
        name = params.get("name")
        if name == "crash":
            log()
            os._exit(3)
        if name == "big":
            text = "x" * (10 * 1024 * 1024)
            return reply(rid, {"content": [{"type": "text", "text": text}], "isError": False})
        if name == "garbage":
            write(b"this is not json\n")
            write(b'{"jsonrpc":"2.0","method":"notifications/message","params":{"data":"\xff\xfe"}}\n')
        if name == "ask":
            write(b'{"jsonrpc":"2.0","id":"s-1","method":"sampling/createMessage","params":{"messages":[],'
                  b'"maxTokens":5}}\n')
            write(b'{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":1,"progress":1}}\n')
        if name == "slow":
            return None  # never answered: the client cancels it
        if name == "fail":
            return json.dumps({"jsonrpc": "2.0", "id": rid, "error": {"code": 0, "message": "unexpected state"}},
                              separators=(",", ":")).encode() + b"\n"
        size = len(json.dumps(params.get("arguments", {})))
        return reply(rid, {"content": [{"type": "text", "text": f"{name} {size}"}], "isError": False})
    if method == "partial":
        write(reply(rid, {})[:-1])  # no newline, then gone
        log()
        os._exit(0)
    return reply(rid, {})


def main() -> None:
    def on_signal(signum: int, frame: Any) -> None:
        log()
        os._exit(40 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    sys.stderr.write("raw-fixture ready\n")
    sys.stderr.flush()
    stdin = sys.stdin.buffer
    while True:
        line = stdin.readline()
        if not line:
            break
        received.update(line)
        counts["received"] += len(line)
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if isinstance(msg, list):
            replies = [handle(m) for m in msg]
            body = b",".join(r.rstrip(b"\n") for r in replies if r)
            if body:
                write(b"[" + body + b"]\n")
            continue
        out = handle(msg)
        if out:
            write(out)
    log()


if __name__ == "__main__":
    main()
