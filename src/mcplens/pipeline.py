"""The bounded queue between the request path and everything slow.

The request path calls :meth:`Pipeline.submit` with a raw capture (references, two clock
readings) and returns; it never builds the event, serialises, hashes or touches a file. A
writer thread turns raw captures into events and writes them out, so a hard kill loses at
most about one flush interval:

- it works in **slices**, one every third of an interval, each building for at most that long
  (and ``MAX_SLICE`` events) and then writing, so writes go out at least every interval however
  fast events arrive;
- what it cannot reach in time is **shed**: captures still queued from before the last two
  writes are dropped and counted, as are captures past the **byte budget**, so the backlog is
  bounded in age, in count and in bytes, never unbounded;
- **exporters** get one thread and one bounded queue each (:class:`ExporterWorker`): a slow or
  blocked exporter drops and counts its own overflow and never delays the event log or
  another exporter; on close they get ``exporter_shutdown_timeout`` seconds all together.

Per raw capture, on the writer thread, the chain is: the capture's **builder** returns the
events of that capture (zero, one or several: a proxy line can complete several calls); each
event goes through the **privacy stage**, then the **processors** (enrichment an exporter adds
to the sanitized event, e.g. OTel trace ids); the batch then goes to the event log and,
read-only, to the exporters.
Every capture path enqueues with :meth:`Pipeline.submit`, once per raw capture.

A raising exporter or an unwritable directory is counted, never raised.
"""

from __future__ import annotations

import atexit
import collections
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from time import perf_counter
from typing import Any, Protocol

from mcplens import event as ev
from mcplens.config import Settings
from mcplens.event_templates import KEY_FIELD, Sanitized, Templates
from mcplens.store import open_writer
from mcplens.store.local.writer import health_record

logger = logging.getLogger("mcplens")

#: seconds between health records while events flow (one is also written on close)
HEALTH_EVERY = 10.0
#: events built per slice at most: bounds the batch held in memory and the size of one write
MAX_SLICE = 4096
#: bytes a queued capture holds besides its request and reply (tuple, context references, dicts)
CAPTURE_OVERHEAD = 2048
#: the queue never shrinks below this many captures, however big events get
MIN_CAPACITY = 16
#: health-record field: events the exporters dropped (queue full, or still queued at the deadline)
HEALTH_EXPORTER_DROPPED = "mcplens.health.exporter_dropped"


class Exporter(Protocol):
    """What the pipeline needs of an exporter (``mcplens.exporters.base.Exporter`` implements it)."""

    @property
    def name(self) -> str: ...

    def export(self, events: Sequence[Mapping[str, Any]]) -> None: ...

    def shutdown(self) -> None: ...

    def lost(self) -> int: ...


#: Turns one raw capture into the events it makes (zero, one or several), on the writer thread.
Builder = Callable[[Any], Sequence[dict[str, Any]]]
#: An enrichment step after the privacy stage, before any sink: returns the event (changed) or None.
Processor = Callable[[dict[str, Any]], "dict[str, Any] | None"]


class Capacity:
    """The queue's current bound in captures: ``len(queue) < capacity`` on the request path.

    The request path does not measure what it queues (that would cost more than the enqueue);
    the writer measures every event it builds anyway, so it sets this bound to the byte budget
    divided by the bytes a recent capture held, never above ``queue_size``. An int compared
    with it calls :meth:`__gt__`, so the capture paths that hold it compare as with an int.
    """

    __slots__ = ("value",)

    def __init__(self, value: int) -> None:
        self.value = value

    def __gt__(self, n: int) -> bool:
        return n < self.value

    def __le__(self, n: int) -> bool:
        return self.value <= n

    def __index__(self) -> int:
        return self.value

    __int__ = __index__

    def __repr__(self) -> str:
        return f"Capacity({self.value})"


class ExporterWorker:
    """One exporter on its own thread, fed whole batches through a queue bounded in events.

    The writer thread only appends a batch here (or counts it as dropped when the queue is
    full), so an exporter blocked on a full pipe or a dead collector holds up nobody but itself.
    """

    def __init__(self, exporter: Exporter, capacity: int, on_fault: Callable[[str, BaseException], None]) -> None:
        self.exporter = exporter
        self.name = str(getattr(exporter, "name", "") or type(exporter).__name__)
        self._capacity = capacity
        self._fault = on_fault
        self._batches: collections.deque[list[dict[str, Any]]] = collections.deque()
        self._queued = 0  # events in _batches, plus the batch being written
        self._cond = threading.Condition()
        self._closing = False
        self._busy_since: float | None = None  # when the write in progress began
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name=f"mcplens-exporter-{self.name}", daemon=True)
        self._thread.start()

    def offer(self, batch: list[dict[str, Any]]) -> None:
        with self._cond:
            room = self._capacity - self._queued
            if room <= 0 or self._closing:
                self.dropped += len(batch)
                return
            if len(batch) > room:
                self.dropped += len(batch) - room
                batch = batch[:room]
            self._batches.append(batch)
            self._queued += len(batch)
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._batches and not self._closing:
                    self._cond.wait()
                if not self._batches:
                    break
                batch = self._batches.popleft()
                self._busy_since = time.monotonic()
            try:
                self.exporter.export(batch)
            except Exception as exc:  # noqa: BLE001 - an exporter's failure is counted, never raised
                self._fault(f"exporter {self.name}", exc)
            with self._cond:
                self._queued -= len(batch)
                self._busy_since = None
                self._cond.notify_all()
        try:
            self.exporter.shutdown()
        except Exception as exc:  # noqa: BLE001
            self._fault("closing an exporter", exc)

    def wait_idle(self, deadline: float) -> bool:
        """Until every offered batch is written, or ``deadline`` (monotonic) passes."""
        with self._cond:
            while self._queued:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def stop(self, deadline: float, stuck_after: float) -> int:
        """Finish the queue and shut the exporter down by ``deadline``; returns the events given up on.

        An exporter already stuck in one write for ``stuck_after`` seconds (a pipe nobody reads)
        is given up on at once: it would not finish within the deadline either.
        """
        with self._cond:
            self._closing = True
            busy = self._busy_since
            self._cond.notify_all()
        if busy is None or time.monotonic() - busy < stuck_after:
            self._thread.join(max(0.0, deadline - time.monotonic()))
        if not self._thread.is_alive():
            return 0
        with self._cond:  # stuck in the exporter: what it still holds is lost, and counted
            lost, self._queued = self._queued, 0
            self._batches.clear()
        self.dropped += lost
        return lost


class Pipeline:
    """A bounded deque, a writer thread, the processors, the event log, the exporters, the counters.

    One per data directory and privacy configuration (see :func:`get_pipeline`).
    """

    def __init__(self, settings: Settings) -> None:
        from mcplens.privacy.ids import lazy_pseudonymizer
        from mcplens.privacy.stage import PrivacyStage

        self.settings = settings
        #: every event passes through it before any sink sees it
        self.privacy = PrivacyStage(settings.effective_policy(), lazy_pseudonymizer(settings.home), settings.processors)
        #: cleaned events a builder copies for a call it has seen before (event_templates); only
        #: filled while the privacy stage is a pure function of the event
        self.templates = Templates()
        self.instance_id = os.urandom(16).hex()
        self._queue: collections.deque[tuple[Builder, Any]] = collections.deque()
        self._queue_size = settings.queue_size
        self._byte_budget = settings.queue_bytes
        self._capacity = Capacity(min(settings.queue_size, max(MIN_CAPACITY, settings.queue_bytes // CAPTURE_OVERHEAD)))
        self._per_capture = float(CAPTURE_OVERHEAD)  # bytes a queued capture holds, as last measured
        self._interval = settings.flush_interval
        self._slice_seconds = settings.flush_interval / 3
        self.counters = {"enqueued": 0, "dropped": 0, "written": 0, "faults": 0, "write_failures": 0,
                         "exporter_dropped": 0}
        #: ``enqueued`` at the last two writes: captures from before both, still queued, are shed
        self._marks: collections.deque[int] = collections.deque([0, 0], maxlen=2)
        self._reported: dict[str, int] = {}
        self._last_health = float("-inf")
        self._eventlog = open_writer(settings, self.instance_id)  # the durable sink: the store's write half
        #: the event log encodes a template's copy itself (``Sanitized.line``), so it need not be made whole
        self._splices = bool(getattr(self._eventlog, "writes_sanitized", False))
        #: enrichment of sanitized events before any sink (an exporter's, e.g. OTel trace ids)
        self.processors: list[Processor] = []
        self.exporters: list[Exporter] = []
        self._workers: list[ExporterWorker] = []
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
    def submit(self, build: Builder, raw: Any) -> bool:
        """Enqueue a raw capture: THE enqueue of every capture path, once per raw capture.

        O(1), never blocks, never raises to the caller; False when the queue was full (the
        capture is dropped and counted). ``build(raw)`` runs later on the writer thread and
        returns the events the capture makes.
        """
        q = self._queue
        if len(q) >= self._capacity.value:
            self.counters["dropped"] += 1
            return False
        q.append((build, raw))
        self.counters["enqueued"] += 1
        return True

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
    def add_exporter(self, exporter: Exporter) -> None:
        """Feed ``exporter`` every batch from now on, on a thread and a bounded queue of its own."""
        self.exporters.append(exporter)
        self._workers.append(ExporterWorker(exporter, self.settings.exporter_queue_size, self.fault))

    def add_processor(self, processor: Processor) -> None:
        """Run ``processor`` over every sanitized event before any sink, after those added before."""
        self.processors.append(processor)

    def set_base(self, **fields: Any) -> None:
        """Fields stamped on health records (server name/version)."""
        self._base.update(fields)

    def _run(self) -> None:
        """A slice every third of an interval: builds for at most that long, writes, sheds.

        Everything enqueued before the last two writes is written or counted by the next one, so
        what a hard kill can lose is what arrived in the last three periods: one interval.
        """
        period = self._slice_seconds
        started = time.monotonic()
        busy = False
        while not self._stop.is_set():
            if not busy:  # behind: go straight on with the next slice, else sleep out the period
                self._wake.wait(max(0.0, period - (time.monotonic() - started)))
                self._wake.clear()
            if self._stop.is_set():
                break
            started = time.monotonic()
            try:
                busy = self._slice(period, shed=True)[0]
            except Exception as exc:  # noqa: BLE001 - the writer thread must outlive its own bugs
                self.fault("the writer", exc)
                busy = False

    def drain(self) -> int:
        """Build and write everything queued so far. Returns the number of events written."""
        total = 0
        pending = len(self._queue)  # not what arrives meanwhile: a flush under load must end
        while True:
            more, written = self._slice(None, shed=False)
            total += written
            pending -= MAX_SLICE
            if pending <= 0 or not more:
                return total

    def _slice(self, seconds: float | None, *, shed: bool) -> tuple[bool, int]:
        """Build up to ``seconds`` (None: no limit) or MAX_SLICE events, write them, then shed what
        waited too long. Returns (captures still queued, events written)."""
        with self._lock:
            q = self._queue
            batch: list[dict[str, Any]] = []
            deadline = perf_counter() + seconds if seconds is not None else None
            out_of_time = False
            seen = 0
            measured = 0
            privacy = self.privacy
            processors = self.processors
            # a copy of a template goes to the event log as it is (encoded from its template's
            # line); whatever else sees it (processors, exporters, a store that takes rows) gets it whole
            whole = bool(processors or self._workers) or not self._splices
            while q and seen < MAX_SLICE:
                if deadline is not None and perf_counter() >= deadline:
                    out_of_time = True
                    break
                try:
                    build, raw = q.popleft()
                except IndexError:
                    break
                seen += 1
                try:
                    built = build(raw) or ()
                except Exception as exc:  # noqa: BLE001 - a builder bug must not stop the writer
                    self.fault("event building", exc)
                    continue
                for e in built:
                    measured += (e.get(ev.REQUEST_SIZE) or 0) + (e.get(ev.RESPONSE_SIZE) or 0)
                    kept: dict[str, Any] | None
                    key = None
                    try:
                        if type(e) is Sanitized:  # a copy of a template this stage cleaned before
                            kept = privacy.stamped(e)
                            self.templates.hits += 1
                            if whole:
                                kept = e.whole()
                        else:
                            key = e.pop(KEY_FIELD, None)
                            kept = privacy(e)
                    except Exception as exc:  # noqa: BLE001 - an event the stage could not clean is not kept
                        self.fault("the privacy stage", exc)
                        continue
                    if key is not None and kept is not None and privacy.pure:
                        self.templates.put(key, kept)
                    if kept is not None and processors:
                        kept = self._process(kept)
                    if kept is not None:
                        batch.append(kept)
            if seen:
                self._learn(measured / seen + CAPTURE_OVERHEAD)
            if shed:
                self._shed(out_of_time)
            written = self._write(batch)
            self._marks.append(self.counters["enqueued"])
            return bool(q), written

    def _process(self, e: dict[str, Any]) -> dict[str, Any] | None:
        """The enrichment processors; one that raises is counted and skipped, the event kept."""
        for processor in self.processors:
            try:
                out = processor(e)
            except Exception as exc:  # noqa: BLE001
                self.fault("an enrichment processor", exc)
                continue
            if out is None:
                return None
            e = out
        return e

    def _learn(self, per_capture: float) -> None:
        """Set the queue's bound from the byte budget and the bytes recent captures held.

        Up at once when captures grow (a burst of large replies must not fill a count-sized
        queue first), down slowly.
        """
        est = self._per_capture
        est = per_capture if per_capture > est else est * 0.9 + per_capture * 0.1
        self._per_capture = est
        self._capacity.value = min(self._queue_size, max(MIN_CAPACITY, int(self._byte_budget // est)))

    def _shed(self, out_of_time: bool) -> None:
        """Drop, and count, captures the writer cannot reach in time or that exceed the budget.

        Queue positions are known from ``enqueued``: the queue holds the last ``len(q)`` captures
        enqueued. After a slice that ran out of time, those enqueued before the last two writes
        have waited two whole slices (one flush interval): keeping them would let the backlog, and
        what a hard kill loses, grow without bound, while a shorter stall (a busy machine, a GC
        pause) is caught up without loss. Past the byte budget, the oldest go first.
        """
        q = self._queue
        excess = len(q) - self._capacity.value
        if out_of_time:
            head = self.counters["enqueued"] - len(q)
            excess = max(excess, self._marks[0] - head)
        n = 0
        while n < excess:
            try:
                q.popleft()
            except IndexError:
                break
            n += 1
        if n:
            self.counters["dropped"] += n

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
        if any(c[k] != r.get(k, 0) for k in ("dropped", "faults", "write_failures", "exporter_dropped")):
            return True
        if not batch and all(c[k] == r.get(k, 0) for k in c):
            return False
        return self._closed or time.monotonic() - self._last_health >= HEALTH_EVERY

    def _count_exporter_drops(self) -> None:
        """Events the exporters' queues dropped, plus those an exporter reports it failed to send."""
        lost = 0
        for exporter in self.exporters:
            try:
                lost += int(exporter.lost()) if hasattr(exporter, "lost") else 0
            except Exception:  # noqa: BLE001
                pass
        self.counters["exporter_dropped"] = lost + sum(w.dropped for w in self._workers)

    def _write(self, batch: list[dict[str, Any]]) -> int:
        """The event log (with a health record if one is due), then the exporters' own queues;
        returns the events that reached the event log."""
        self._count_exporter_drops()
        count = len(batch)
        out = batch
        health = self._health_due(batch)
        if health:
            snap = self._snapshot(count)
            record = health_record(self.instance_id, snap, self._base)
            record[HEALTH_EXPORTER_DROPPED] = snap.get("exporter_dropped", 0)
            extra = getattr(self._eventlog, "health_fields", None)  # a store's own counters (PostgreSQL)
            if extra is not None:
                try:
                    record.update(extra())
                except Exception:  # noqa: BLE001 - fail-open: the record goes without them
                    pass
            out = [*batch, record]
        written = 0
        if out:
            try:
                written = self._eventlog.write_batch(out)
            except Exception as exc:  # noqa: BLE001 - unwritable directory, disk full ...
                written = getattr(exc, "whole_lines", 0)
                self.fault("writing the event log", exc)
            written = min(written, count)  # the health record is last: it does not count
            self.counters["written"] += written
            self.counters["write_failures"] += count - written
            if health and written < count:
                self._reported = {}  # the record did not make it: send another with the next batch
        if batch:
            for w in self._workers:
                w.offer(batch)
        return written

    def flush(self) -> None:
        """Write out everything submitted before this call, and wait (up to the exporter
        deadline) for the exporters to take it (used by tests and shutdown)."""
        if threading.current_thread() is self._thread:
            return
        self.drain()
        deadline = time.monotonic() + self.settings.exporter_shutdown_timeout
        for w in list(self._workers):
            w.wait_idle(deadline)
        self.drain()  # a health record for faults the exporters counted meanwhile

    def close(self) -> None:
        """Stop the writer and flush the rest. Safe to call more than once (atexit, SIGTERM).

        The event log gets everything still queued; the exporters then get
        ``exporter_shutdown_timeout`` seconds between them, after which what they still hold is
        counted as dropped in the last health record.
        """
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=5.0)
        self.drain()
        deadline = time.monotonic() + self.settings.exporter_shutdown_timeout
        for w in list(self._workers):
            w.stop(deadline, stuck_after=self.settings.exporter_shutdown_timeout)
        self._count_exporter_drops()
        self._slice(None, shed=False)  # the last health record, with the exporters' losses
        try:
            self._eventlog.close()
        except Exception as exc:  # noqa: BLE001
            self.fault("closing the event log", exc)


#: the process's pipelines with the key they were made for (see :func:`pipeline_key`)
_pipelines: list[tuple[Any, Pipeline]] = []
_pipeline_lock = threading.Lock()


def pipeline_key(settings: Settings) -> tuple[Settings, Any]:
    """What two captures must agree on to share a pipeline: everything the pipeline does with
    events (data directory, privacy policy as it takes effect, processors, exporters, queue and
    segment limits), not what only names a server or guards its requests."""
    shared = replace(settings, server_name=None, server_version=None, rate_limit=None, mode="local",
                     opt_in_env=None, handle_sigterm=True)
    return shared, settings.effective_policy()


def get_pipeline(settings: Settings) -> Pipeline:
    """The pipeline for ``settings``: shared by every capture whose :func:`pipeline_key` is equal.

    A second ``instrument(..., privacy=Policy(...))`` with another policy (or other processors
    or exporters) gets a pipeline of its own over the same data directory, so its policy is the
    one applied to its events, never silently replaced by the first one's.
    """
    key = pipeline_key(settings)
    with _pipeline_lock:
        for i, (k, pipeline) in enumerate(_pipelines):
            if k == key:
                if not pipeline._closed:
                    return pipeline
                del _pipelines[i]
                break
        pipeline = Pipeline(settings)
        _pipelines.append((key, pipeline))
        _install_sigterm(settings)
        return pipeline


def pipelines() -> list[Pipeline]:
    with _pipeline_lock:
        return [p for _, p in _pipelines]


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
