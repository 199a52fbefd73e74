"""Structured logging: every event as a standard-library ``logging`` record on ``mcplens.events``.

Each record carries the event's fields in ``extra`` (so any handler or filter can read
``record.__dict__["mcp.method.name"]``) and the whole event as ``record.mcplens_event``;
:class:`JsonFormatter` turns a record into one JSON line a shipper (Vector, Fluent Bit,
Promtail, the CloudWatch or Datadog agents) can tail. The events arrive here after the
privacy stage, so a log line holds nothing the local store would not.

Output goes to stderr or a file, never to stdout: a stdio server's stdout is the protocol.
A logger that already has handlers (the application configured it) is left as it is.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mcplens import _json
from mcplens import event as ev
from mcplens.exporters.base import Exporter, ExporterContext

LOGGER = "mcplens.events"

#: LogRecord attributes an ``extra`` key must not overwrite
_RESERVED = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``@timestamp``, ``level``, ``logger``, ``message`` and the event."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "@timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "mcplens_event", None)
        if isinstance(fields, dict):
            out.update((k, v) for k, v in fields.items() if k not in out)  # the envelope's keys win
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return _json.compact(out)


def message(e: Mapping[str, Any]) -> str:
    """A short human line: ``tools/call add ok 1.2 ms``."""
    parts = [str(e.get(ev.METHOD) or e.get(ev.EVENT_KIND) or "event")]
    target = e.get(ev.TARGET)
    if target and target != parts[0]:
        parts.append(str(target))
    parts.append(str(e.get(ev.STATUS) or ""))
    duration = e.get(ev.DURATION)
    if isinstance(duration, int | float):
        parts.append(f"{duration * 1000:.1f} ms")
    return " ".join(p for p in parts if p)


class _OwnerOnlyFileHandler(logging.handlers.WatchedFileHandler):
    """The log file holds events: created (and re-created after a rotation) owner-readable only."""

    def _open(self) -> Any:
        return open(self.baseFilename, self.mode, encoding=self.encoding, errors=self.errors,
                    opener=lambda p, f: os.open(p, f, 0o600))


class _NoLock:
    """Stands in for a handler's lock: one ``os.write`` per record needs none."""

    def acquire(self, *args: Any) -> bool:
        return True

    def release(self) -> None:
        pass

    def _at_fork_reinit(self) -> None:
        pass

    __enter__ = acquire

    def __exit__(self, *exc: Any) -> None:
        pass


class StderrHandler(logging.Handler):
    """Each record as one ``os.write`` on a private duplicate of fd 2, holding no lock.

    A stderr nobody reads fills its pipe, and the next write blocks. Through ``sys.stderr`` that
    write would hold the interpreter's stderr buffer lock, and through a ``StreamHandler`` the
    handler lock that ``logging.shutdown()`` takes at exit: the process could then neither print
    nor exit. Here only the exporter's own thread waits (the pipeline counts what it drops);
    nothing another thread or the shutdown needs is held while it waits.
    """

    def __init__(self) -> None:
        super().__init__()
        self._fd: int | None = os.dup(sys.stderr.fileno() if sys.stderr is not None else 2)

    def createLock(self) -> None:  # noqa: N802 - logging's name
        self.lock = _NoLock()  # type: ignore[assignment]

    def emit(self, record: logging.LogRecord) -> None:
        fd = self._fd
        if fd is None:
            return
        try:
            data = (self.format(record) + "\n").encode("utf-8", "replace")
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        except Exception:  # noqa: BLE001
            self.handleError(record)

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass
        super().close()


def make_handler(path: Path | None) -> logging.Handler:
    """A JSON handler on ``path`` (reopened when logrotate moves it) or on stderr."""
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        handler: logging.Handler = _OwnerOnlyFileHandler(path, encoding="utf-8")
    else:
        handler = StderrHandler()
    handler.setFormatter(JsonFormatter())
    return handler


class LogExporter(Exporter):
    """Emits each event as an INFO record (WARNING when its status is not ``ok``)."""

    name = "log"

    def __init__(self, path: Path | None = None, logger: logging.Logger | None = None) -> None:
        self.path = path
        self.logger = logger or logging.getLogger(LOGGER)
        self._handler: logging.Handler | None = None

    @classmethod
    def from_settings(cls, settings: Any) -> LogExporter:
        return cls(settings.log_file)

    def setup(self, ctx: ExporterContext | None = None) -> None:
        """A JSON handler on the file or stderr, unless the application configured the logger."""
        if not self.logger.handlers:
            self._handler = make_handler(self.path)
            self.logger.addHandler(self._handler)
            self.logger.propagate = False  # a root handler on stdout must not get protocol-breaking lines
        if self.logger.level == logging.NOTSET:
            self.logger.setLevel(logging.INFO)

    def export(self, events: Sequence[Mapping[str, Any]]) -> None:
        log = self.logger
        if not log.isEnabledFor(logging.INFO):
            return
        for e in events:
            status = e.get(ev.STATUS)
            level = logging.INFO if status in (None, ev.OK) else logging.WARNING
            if not log.isEnabledFor(level):
                continue
            extra: dict[str, Any] = {k: v for k, v in e.items() if k not in _RESERVED}
            extra["mcplens_event"] = e
            log.log(level, "%s", message(e), extra=extra)

    def flush(self) -> None:
        if self._handler is not None:
            self._handler.flush()

    def shutdown(self) -> None:
        if self._handler is not None:
            self._handler.flush()
            self.logger.removeHandler(self._handler)
            self._handler.close()
            self._handler = None
