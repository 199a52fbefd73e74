"""``mcplens proxy -- CMD ...``: record any stdio MCP server without touching its code.

The proxy starts the server and copies bytes both ways exactly as they arrive (``os.read`` /
``os.write`` on the raw descriptors, no decoding, no re-encoding, no waiting for a newline), with
the server's stderr inherited untouched. Two threads relay; per chunk each one reads the clock,
cuts complete lines out of the chunk and enqueues them (``Pipeline.submit``) *before* forwarding
the chunk, so a reply can never reach the queue ahead of its request. Parsing, pairing and event
building happen later on the writer thread (:class:`StdioCapture`).

Signals SIGINT/SIGTERM/SIGHUP are forwarded to the server, which runs in its own process group
so a terminal's Ctrl-C reaches it once; the proxy exits with the server's exit code (or dies of
the same signal), after flushing its events.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from time import perf_counter
from typing import Any, Final, cast

from mcplens import event as ev
from mcplens.capture.jsonrpc import (
    CLIENT_TO_SERVER,
    SERVER_TO_CLIENT,
    Conversation,
    Pairer,
    is_message,
    parse,
)
from mcplens.capture.proxy_recorder import Recorder
from mcplens.config import Settings
from mcplens.pipeline import Pipeline
from mcplens.safetext import text as safe_text

CHUNK: Final = 65536
#: a line longer than this is still relayed whole, but not parsed (recorded as ``too_large``)
MAX_CAPTURED_LINE: Final = 64 * 1024 * 1024
SWITCH_INTERVAL: Final = 0.00005  # seconds; this process is ours, only the relay and the writer run in it
FORWARDED_SIGNALS: Final = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

#: a server message longer than this is not joined or parsed whole: the relay keeps its first
#: and last SKIM_EDGE bytes and the writer reads the envelope (id, result or error) from them.
#: Parsing 20 MB of JSON holds the GIL for 0.1-0.3 s, and every message behind it would wait
SKIM_OVER: Final = 1024 * 1024
SKIM_EDGE: Final = 64 * 1024

# raw item kinds on the queue
LINE, PARTIAL, EOF, OVERSIZE, SKIM = 0, 1, 2, 3, 4

#: what the writer thread gets from the relay: (direction, line bytes, perf_counter, kind, size)
Raw = tuple[str, bytes, float, int, int]


class StdioCapture:
    """Writer-thread builder: lines in, events out. One conversation: the pipe is the session."""

    def __init__(self, pipeline: Pipeline, settings: Settings) -> None:
        self.pairer = Pairer(transport="pipe", server_name=settings.server_name,
                             server_version=settings.server_version, name_fixed=settings.server_name is not None)
        self.recorder = Recorder(pipeline, self.pairer)
        self.conv = Conversation(session_raw=f"pipe:{pipeline.instance_id}")
        self._offset = time.time() - perf_counter()

    def __call__(self, raw: Raw) -> list[dict[str, Any]]:
        direction, line, t, kind, size = raw
        start = t + self._offset
        rec = self.recorder
        if kind == EOF:
            if direction == SERVER_TO_CLIENT:
                for x in self.pairer.unanswered(self.conv, None, t):
                    # the server closed its stdout (exited, crashed) with this call in flight
                    x.status_override, x.exception_type = ev.EXCEPTION, "ServerExited"
                    x.error_message, x.response_size = "connection closed by server", 0
                    rec.add(x)
            return rec.finish()
        if kind == OVERSIZE:
            rec.protocol_error("too_large", size, start, direction=direction, session_raw=self.conv.session_raw)
            return rec.finish()
        if kind == SKIM:
            head, tail = cast(tuple[bytes, bytes], line)  # a SKIM item carries the message's two edges
            msg = skim(head, tail)
            if msg is None:
                rec.protocol_error("too_large", size, start, direction=direction, session_raw=self.conv.session_raw)
            else:
                self._one(direction, msg, start, t, size)
            return rec.finish()
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line.strip():
            if kind == PARTIAL:
                rec.protocol_error("unterminated_line", size, start, direction=direction,
                                   session_raw=self.conv.session_raw)
            return rec.finish()
        obj, reason = parse(line)
        # An unterminated last line is recorded once: as its message when it parses (the event
        # then says it was unterminated), else as one protocol error.
        partial = kind == PARTIAL
        if reason is None and isinstance(obj, list) and obj:
            for item in obj:  # a JSON-RPC batch (2025-03-26 era): each member on its own
                self._one(direction, item, start, t, None, partial=partial)
        elif reason is None:
            self._one(direction, obj, start, t, len(line), partial=partial)
        else:
            rec.protocol_error("unterminated_line" if partial else reason, size, start, direction=direction,
                               session_raw=self.conv.session_raw)
        return rec.finish()

    def _one(self, direction: str, msg: Any, start: float, t: float, size: int | None, *,
             partial: bool = False) -> None:
        rec = self.recorder
        if not is_message(msg):
            rec.protocol_error("not_jsonrpc", size or 0, start, direction=direction,
                               session_raw=self.conv.session_raw)
            return
        if direction == CLIENT_TO_SERVER:
            rec.add(self.pairer.client_message(self.conv, msg, start=start, t=t))
            return
        x, matched = self.pairer.server_message(self.conv, msg, start=start, t=t, size=size)
        if partial and x is not None:
            x.extra[ev.PROXY_ERROR] = "unterminated_line"
        if not matched:
            rec.protocol_error("unmatched_reply", size or 0, start, direction=direction,
                               session_raw=self.conv.session_raw)
        rec.add(x)


class _LineCutter:
    """Cuts complete lines out of relayed chunks and enqueues them; runs on a relay thread."""

    __slots__ = ("_submit", "_build", "_direction", "_parts", "_held", "_oversize", "_skim", "_tail")

    def __init__(self, pipeline: Pipeline | None, build: StdioCapture | None, direction: str) -> None:
        self._submit = pipeline.submit if pipeline is not None else None
        self._build: Any = build  # set whenever _submit is
        self._direction = direction
        self._parts: list[bytes] = []
        self._held = 0
        self._oversize = False
        #: server messages past SKIM_OVER keep only their edges (client requests are read whole:
        #: their argument sizes are recorded)
        self._skim: bool | None = direction == SERVER_TO_CLIENT and None
        self._tail = b""

    def feed(self, chunk: bytes, t: float) -> None:
        submit = self._submit
        if submit is None:
            return
        start = 0
        find = chunk.find
        while True:
            i = find(b"\n", start)
            if i < 0:
                if start < len(chunk):
                    self._hold(chunk[start:] if start else chunk)
                return
            if self._parts or self._oversize:
                self._hold(chunk[start:i])
                self._emit(t, LINE)
            else:
                submit(self._build, (self._direction, chunk[start:i], t, LINE, i - start))
            start = i + 1

    def _hold(self, piece: bytes) -> None:
        self._held += len(piece)
        if self._oversize:
            return
        if self._skim:
            self._tail = (self._tail + piece)[-SKIM_EDGE:]
            return
        if self._skim is None and self._held > SKIM_OVER:
            self._parts.append(piece)
            head = b"".join(self._parts)
            self._parts, self._tail, self._skim = [head[:SKIM_EDGE]], head[-SKIM_EDGE:], True
            return
        if self._held > MAX_CAPTURED_LINE:
            self._oversize, self._parts = True, []
            return
        self._parts.append(piece)

    def _emit(self, t: float, kind: int) -> None:
        assert self._submit is not None
        if self._oversize:
            self._submit(self._build, (self._direction, b"", t, OVERSIZE, self._held))
        elif self._skim:
            edges = (self._parts[0], self._tail)
            self._submit(self._build, (self._direction, edges, t, SKIM if kind == LINE else OVERSIZE, self._held))
            self._skim, self._tail = None, b""
        else:
            line = b"".join(self._parts)
            self._submit(self._build, (self._direction, line, t, kind, len(line)))
        self._parts, self._held, self._oversize = [], 0, False

    def eof(self, t: float) -> None:
        if self._submit is None:
            return
        if self._parts or self._oversize:
            self._emit(t, PARTIAL)
        self._submit(self._build, (self._direction, b"", t, EOF, 0))


_SCALAR = rb'(-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?|"(?:[^"\\]|\\.){0,256}"|true|false|null)'
#: leading members of the top-level object whose values are scalars, then the first other key
_HEAD_MEMBER = re.compile(rb'\s*"(jsonrpc|id|method)"\s*:\s*' + _SCALAR + rb'\s*,')
_HEAD_OPEN = re.compile(rb'\s*"(result|error|params)"\s*:\s*[\[{]')
#: trailing scalar members, read backwards from the closing brace
_TAIL_MEMBER = re.compile(rb',\s*"(jsonrpc|id|method)"\s*:\s*' + _SCALAR + rb'\s*$')
_IS_ERROR = re.compile(rb'"isError"\s*:\s*true')


def skim(head: bytes, tail: bytes) -> dict[str, Any] | None:
    """The envelope of a huge JSON-RPC message from its first and last bytes: its scalar
    top-level members (``jsonrpc``, ``id``, ``method``) and which of ``result``/``error``/``params``
    it carries, with the bulk left out. None when the edges do not read as one message.

    SDKs write the scalars before the bulk (Python: ``{"jsonrpc","id","result"}``) or after it
    (TypeScript: ``{"result",...,"jsonrpc","id"}``); a ``tools/call`` result's ``isError`` is
    looked for near either edge. Nothing of the content is kept, only the reply's exact size.
    """
    head = head.lstrip()
    if not head.startswith(b"{"):
        return None
    msg: dict[str, Any] = {}
    pos = 1
    while m := _HEAD_MEMBER.match(head, pos):
        msg[m.group(1).decode()] = json.loads(m.group(2))
        pos = m.end()
    opened = _HEAD_OPEN.match(head, pos)
    if opened is None:
        return None
    bulk = opened.group(1).decode()
    end = tail.rstrip()
    if not end.endswith(b"}"):
        return None
    end = end[:-1]
    while m := _TAIL_MEMBER.search(end[-4096:]):
        msg.setdefault(m.group(1).decode(), json.loads(m.group(2)))
        end = end[: len(end) - len(m.group(0))]
    if bulk == "result":
        flagged = _IS_ERROR.search(head, opened.end(), opened.end() + 4096) or _IS_ERROR.search(end[-4096:])
        msg["result"] = {"isError": True} if flagged else {}
    else:
        msg[bulk] = {}
    return msg


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _relay(src: int, dst: int, cutter: _LineCutter, on_eof: Any) -> None:
    """Copy ``src`` to ``dst`` until EOF. If ``dst`` goes away, keep reading ``src`` (and
    recording) so the writer on the other side never blocks on a full pipe."""
    dst_ok = True
    try:
        while True:
            try:
                chunk = os.read(src, CHUNK)
            except OSError:
                chunk = b""
            t = perf_counter()
            if not chunk:
                break
            cutter.feed(chunk, t)
            if dst_ok:
                try:
                    _write_all(dst, chunk)
                except OSError:  # broken pipe: the reader went away; keep draining
                    dst_ok = False
        cutter.eof(perf_counter())
    finally:
        on_eof()


class StdioProxy:
    """One server process behind one client, relayed and recorded."""

    def __init__(self, command: Sequence[str], pipeline: Pipeline | None, settings: Settings) -> None:
        self.command = list(command)
        self.pipeline = pipeline
        self.capture = StdioCapture(pipeline, settings) if pipeline is not None else None
        self.proc: subprocess.Popen[bytes] | None = None

    def run(self) -> int:
        """Relay until the server exits; return its exit code (negative: killed by that signal)."""
        try:
            self.proc = proc = subprocess.Popen(
                self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None, bufsize=0,
                process_group=0,
            )
        except OSError as e:
            print(f"mcplens proxy: cannot start {self.command[0]!r}: {e}", file=sys.stderr)
            return 127 if isinstance(e, FileNotFoundError) else 126
        # the program's name only: its arguments may carry tokens (``--api-key ...``)
        program = safe_text(os.path.basename(self.command[0]))
        print(f"mcplens proxy: started {program} (pid {proc.pid}); recording "
              f"{'on' if self.pipeline is not None else 'off'}", file=sys.stderr, flush=True)
        previous = self._forward_signals()
        # the relay threads wait in os.read without the GIL; when bytes arrive while the writer
        # thread is building events, the default 5 ms switch interval would be added to that message
        sys.setswitchinterval(SWITCH_INTERVAL)
        assert proc.stdin is not None and proc.stdout is not None
        child_in, child_out = proc.stdin.fileno(), proc.stdout.fileno()

        def close_child_stdin() -> None:
            with contextlib.suppress(OSError):
                proc.stdin.close()  # type: ignore[union-attr]

        up = threading.Thread(
            target=_relay, name="mcplens-proxy-c2s", daemon=True,
            args=(sys.stdin.fileno(), child_in, _LineCutter(self.pipeline, self.capture, CLIENT_TO_SERVER),
                  close_child_stdin),
        )
        down = threading.Thread(
            target=_relay, name="mcplens-proxy-s2c", daemon=True,
            args=(child_out, sys.stdout.fileno(), _LineCutter(self.pipeline, self.capture, SERVER_TO_CLIENT),
                  lambda: None),
        )
        up.start()
        down.start()
        try:
            code = proc.wait()
            # the server is gone; what it wrote is still in the pipe: relay it to the end (a
            # grandchild may hold the pipe open, so not forever)
            down.join(timeout=10.0)
        finally:
            self._restore_signals(previous)
            if self.pipeline is not None:
                self.pipeline.close()
        if code != 0:
            how = f"signal {-code}" if code < 0 else f"code {code}"
            print(f"mcplens proxy: {program} (pid {proc.pid}) exited with {how}", file=sys.stderr, flush=True)
        return code

    def _forward_signals(self) -> dict[int, Any]:
        previous: dict[int, Any] = {}
        if threading.current_thread() is not threading.main_thread():
            return previous

        def forward(signum: int, frame: Any) -> None:
            if self.proc is not None and self.proc.poll() is None:
                with contextlib.suppress(OSError):
                    self.proc.send_signal(signum)

        for sig in FORWARDED_SIGNALS:
            with contextlib.suppress(OSError, ValueError):
                previous[sig] = signal.signal(sig, forward)
        return previous

    @staticmethod
    def _restore_signals(previous: dict[int, Any]) -> None:
        for sig, handler in previous.items():
            with contextlib.suppress(OSError, ValueError, TypeError):
                signal.signal(sig, handler)


def exit_like(code: int) -> int:
    """Leave the way the server left: its exit status, or death by the same signal."""
    if code >= 0:
        return code
    sig = -code
    with contextlib.suppress(OSError, ValueError):
        sys.stdout.flush()
        signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
        time.sleep(1.0)
    return 128 + sig
