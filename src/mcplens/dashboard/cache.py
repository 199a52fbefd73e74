"""Results kept per key, refreshed behind the reader's back once they age.

The insights over a window take up to a second over a big store; the pages refresh every 15 s while
live. Without this, every refresh after the result's time to live waited for a fresh run.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable
from typing import Any

log = logging.getLogger("mcplens.dashboard")


class StaleWhileRevalidate:
    """Per key: a result made within ``fresh`` seconds is served as is; an older one, up to ``stale``
    seconds old, is served while one background run (per key) replaces it; with none, or only one
    older still, the caller computes it and waits (as HTTP's ``stale-while-revalidate``, RFC 5861).

    A background run that fails leaves the older result in place (served until it is ``stale``, then
    computed in the caller, whose error the caller sees); failures are counted in :attr:`failures`.
    """

    def __init__(self, fresh: float, stale: float, clock: Callable[[], float] = time.monotonic) -> None:
        if not 0 < fresh <= stale:
            raise ValueError("need 0 < fresh <= stale")
        self.fresh, self.stale, self.clock = fresh, stale, clock
        self._lock = threading.Lock()
        self._kept: dict[Hashable, tuple[float, Any]] = {}
        self._running: set[Hashable] = set()
        self.failures = 0

    def get(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        with self._lock:
            hit = self._kept.get(key)
            if hit is not None:
                age = self.clock() - hit[0]
                if age < self.fresh:
                    return hit[1]
                if age < self.stale:
                    if key not in self._running:
                        self._running.add(key)
                        threading.Thread(target=self._refresh, args=(key, compute), name="mcplens-refresh",
                                         daemon=True).start()
                    return hit[1]
        value = compute()
        self._keep(key, value)
        return value

    def _refresh(self, key: Hashable, compute: Callable[[], Any]) -> None:
        try:
            self._keep(key, compute())
        except Exception as e:  # noqa: BLE001 - the older result stays; the next caller past `stale` sees the error
            with self._lock:
                self.failures += 1
            # the key (repr: control characters escaped) and the error's type only: its message may quote
            # names from requests and events, which reach a terminal unescaped
            log.warning("refreshing %r failed (%s); serving the older result", key, type(e).__name__)
        finally:
            with self._lock:
                self._running.discard(key)

    def _keep(self, key: Hashable, value: Any) -> None:
        with self._lock:
            now = self.clock()
            self._kept[key] = (now, value)
            for k in [k for k, (t, _) in self._kept.items() if now - t >= self.stale]:  # custom windows pile up
                del self._kept[k]

    def running(self) -> int:
        """How many background runs are under way."""
        with self._lock:
            return len(self._running)
