"""The bounded queue between the request path and everything slow.

The request path calls :meth:`Pipeline.submit` with a raw capture (references, two clock
readings) and returns; it never builds the event, serialises, hashes or touches a file. A
writer thread wakes every ``flush_interval``, turns raw captures into events, hands each batch
to every sink and writes it out, so a hard kill loses at most one interval. A full queue drops
and counts; a raising sink or an unwritable directory is counted, never raised.
"""

from __future__ import annotations

import atexit
import collections
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from mcplens import event as ev
from mcplens.config import Settings
from mcplens.sinks.eventlog import EventLogSink, health_record

logger = logging.getLogger("mcplens")

#: seconds between health records while events flow (one is also written on close)
HEALTH_EVERY = 10.0


class Sink(Protocol):
    """Anything that takes finished events in batches, on the writer thread."""

    name: str

    def write_batch(self, events: list[dict[str, Any]]) -> None: ...

    def close(self) -> None: ...


#: Builds an event from a raw capture, on the writer thread. Returns None to skip it.
Builder = Callable[[Any], "dict[str, Any] | None"]


class Pipeline:
    """One per process: a bounded deque, a writer thread, the sinks, and the counters."""

    def __init__(self, settings: Settings) -> None:
        from mcplens.privacy.ids import lazy_pseudonymizer
        from mcplens.privacy.stage import PrivacyStage

        self.settings = settings
        #: every event passes through it before any sink sees it
        self.privacy = PrivacyStage(settings.effective_policy(), lazy_pseudonymizer(settings.home), settings.processors)
        self.instance_id = os.urandom(16).hex()
        self._queue: collections.deque[tuple[Builder, Any]] = collections.deque()
        self._capacity = settings.queue_size
        self.counters = {"enqueued": 0, "dropped": 0, "written": 0, "faults": 0, "write_failures": 0}
        self._reported: dict[str, int] = {}
        self._last_health = float("-inf")
        self._eventlog = EventLogSink(
            settings.home, self.instance_id, max_bytes=settings.segment_max_bytes, max_age=settings.segment_max_age
        )
        self.sinks: list[Sink] = []
        self._base: dict[str, Any] = {ev.INSTANCE_ID: self.instance_id, ev.PID: os.getpid()}
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._lock = threading.Lock()  # one drain at a time (writer thread, flush(), close())
        self._closed = False
        self._warned: set[str] = set()
        self._thread = threading.Thread(target=self._run, name="mcplens-writer", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    # -- request path -------------------------------------------------------------------------
    def submit(self, build: Builder, raw: Any) -> None:
        """Enqueue a raw capture. O(1), never blocks, never raises to the caller."""
        q = self._queue
        if len(q) >= self._capacity:
            self.counters["dropped"] += 1
            return
        q.append((build, raw))
        self.counters["enqueued"] += 1

    def fault(self, where: str, exc: BaseException | None = None) -> None:
        """Count one of our own failures; log the first of each kind at WARNING (stderr).

        Only the exception's type is logged: its message may quote the raw request it failed
        on, which the privacy stage has not cleaned yet.
        """
        self.counters["faults"] += 1
        if where not in self._warned:
            self._warned.add(where)
            kind = type(exc).__name__ if exc is not None else "unknown"
            logger.warning("mcplens: %s failed with %s (counted, the call was not affected)", where, kind)

    # -- writer side --------------------------------------------------------------------------
    def add_sink(self, sink: Sink) -> None:
        self.sinks.append(sink)

    def set_base(self, **fields: Any) -> None:
        """Fields stamped on health records (server name/version)."""
        self._base.update(fields)

    def _run(self) -> None:
        interval = self.settings.flush_interval
        while not self._stop.is_set():
            self._wake.wait(interval)
            self._wake.clear()
            self.drain()

    def drain(self) -> int:
        """Build and write everything queued so far. Returns the number of events written."""
        with self._lock:
            batch: list[dict[str, Any]] = []
            q = self._queue
            while q:
                try:
                    build, raw = q.popleft()
                except IndexError:
                    break
                try:
                    e = build(raw)
                except Exception as exc:  # noqa: BLE001 - a builder bug must not stop the writer
                    self.fault("event building", exc)
                    continue
                if e is None:
                    continue
                try:
                    e = self.privacy(e)
                except Exception as exc:  # noqa: BLE001 - an event the stage could not clean is not kept
                    self.fault("the privacy stage", exc)
                    continue
                if e is not None:
                    batch.append(e)
            return self._write(batch)

    def _snapshot(self, pending: int) -> dict[str, int]:
        self._last_health = time.monotonic()
        snap = dict(self.counters)
        snap["written"] += pending  # as it will be once this batch is out
        self._reported = dict(snap)
        return snap

    def _health_due(self, batch: list[dict[str, Any]]) -> bool:
        """A health record goes out at once when something was lost, else at most every
        ``HEALTH_EVERY`` seconds while counters move, and a last one on close."""
        c, r = self.counters, self._reported
        if any(c[k] != r.get(k, 0) for k in ("dropped", "faults", "write_failures")):
            return True
        if not batch and all(c[k] == r.get(k, 0) for k in c):
            return False
        return self._closed or time.monotonic() - self._last_health >= HEALTH_EVERY

    def _write(self, batch: list[dict[str, Any]]) -> int:
        """Hand the batch to every sink, then append it, with a health record if one is due,
        to the event log: the record then counts this batch's own sink faults."""
        if batch:
            for sink in self.sinks:
                try:
                    sink.write_batch(batch)
                except Exception as exc:  # noqa: BLE001
                    self.fault(f"sink {getattr(sink, 'name', sink)!s}", exc)
        count = len(batch)
        if self._health_due(batch):
            batch = [*batch, health_record(self.instance_id, self._snapshot(count), self._base)]
        if not batch:
            return 0
        try:
            self._eventlog.write_batch(batch)
        except Exception as exc:  # noqa: BLE001 - unwritable directory, disk full ...
            self.counters["write_failures"] += count
            self.fault("writing the event log", exc)
            return 0
        self.counters["written"] += count
        return count

    def flush(self) -> None:
        """Write out everything submitted before this call (used by tests and shutdown)."""
        if threading.current_thread() is self._thread:
            return
        self.drain()

    def close(self) -> None:
        """Stop the writer and flush the rest. Safe to call more than once (atexit, SIGTERM)."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=5.0)
        self.drain()
        for sink in [*self.sinks, self._eventlog]:
            try:
                sink.close()
            except Exception as exc:  # noqa: BLE001
                self.fault("closing a sink", exc)


_pipelines: dict[str, Pipeline] = {}
_pipeline_lock = threading.Lock()


def get_pipeline(settings: Settings) -> Pipeline:
    """The process's pipeline for ``settings.home``, created on first use and then shared."""
    key = str(settings.home)
    with _pipeline_lock:
        pipeline = _pipelines.get(key)
        if pipeline is None or pipeline._closed:
            pipeline = _pipelines[key] = Pipeline(settings)
            _install_sigterm(settings)
        return pipeline


def pipeline_with_exporters(settings: Settings) -> Pipeline:
    """The pipeline for a way in that has no server object (the proxies), with the exporters
    ``settings.exporters`` names (``MCPLENS_EXPORTERS``) attached, as ``instrument()`` does."""
    pipeline = get_pipeline(settings)
    if getattr(settings, "exporters", None):
        from mcplens import sinks

        sinks.setup(pipeline, settings, service_name=settings.server_name, service_version=settings.server_version)
    return pipeline


def pipelines() -> list[Pipeline]:
    with _pipeline_lock:
        return list(_pipelines.values())


def close_all() -> None:
    for pipeline in pipelines():
        pipeline.close()


def _install_sigterm(settings: Settings) -> None:
    """Flush on SIGTERM, then die of it as before: only where nobody handles SIGTERM already.

    Python's default SIGTERM ends the process without running atexit, which would lose the
    last interval of a stdio server that its client stops with SIGTERM.
    """
    if not settings.handle_sigterm or threading.current_thread() is not threading.main_thread():
        return
    try:
        if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
            return

        def on_sigterm(signum: int, frame: Any) -> None:
            try:
                close_all()
            finally:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                os.kill(os.getpid(), signal.SIGTERM)

        signal.signal(signal.SIGTERM, on_sigterm)
    except (ValueError, OSError, AttributeError) as exc:
        logger.warning("mcplens: could not install the SIGTERM flush handler: %r", exc)
