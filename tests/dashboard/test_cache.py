"""The insights' cache: fresh results served as is, aged ones while one background run replaces them."""

from __future__ import annotations

import threading

import pytest

from mcplens.dashboard.cache import StaleWhileRevalidate
from tests.conftest import poll


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Runs:
    """A computation that counts its calls; ``gate`` (when set up) holds each call until released."""

    def __init__(self, gated: bool = False, fail: bool = False) -> None:
        self.calls = 0
        self.gate = threading.Event()
        self.started = threading.Event()
        if not gated:
            self.gate.set()
        self.fail = fail

    def __call__(self) -> str:
        self.calls += 1
        self.started.set()
        assert self.gate.wait(10)
        if self.fail:
            raise RuntimeError("store gone")
        return f"result {self.calls}"


def test_a_fresh_result_is_served_without_a_run() -> None:
    clock, runs = Clock(), Runs()
    cache = StaleWhileRevalidate(30, 300, clock)
    assert cache.get("7d", runs) == "result 1"
    clock.now += 29.9
    assert cache.get("7d", runs) == "result 1"
    assert runs.calls == 1
    assert cache.get("1h", runs) == "result 2"  # another key, its own run


def test_an_aged_result_is_served_at_once_while_one_run_replaces_it() -> None:
    clock = Clock()
    cache = StaleWhileRevalidate(30, 300, clock)
    assert cache.get("7d", lambda: "old") == "old"
    clock.now += 31
    slow = Runs(gated=True)
    # the run is held: the callers get the older result without waiting for it, and only one run starts
    assert [cache.get("7d", slow) for _ in range(5)] == ["old"] * 5
    assert slow.started.wait(10) and slow.calls == 1 and cache.running() == 1
    slow.gate.set()
    assert poll(lambda: cache.running() == 0, interval=0.005)
    assert cache.get("7d", slow) == "result 1" and slow.calls == 1  # the run's result, fresh now
    clock.now += 29
    assert cache.get("7d", Runs()) == "result 1"


def test_a_failed_background_run_keeps_the_older_result_and_is_counted(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    cache = StaleWhileRevalidate(30, 300, clock)
    key = ("7d", None, "srv\x1b[31m")
    cache.get(key, lambda: "old")
    clock.now += 60
    with caplog.at_level("WARNING", logger="mcplens.dashboard"):
        assert cache.get(key, Runs(fail=True)) == "old"
        assert poll(lambda: cache.failures == 1 and cache.running() == 0, interval=0.005)
    # logged by the error's type, the key escaped: an error's text may quote names from requests
    assert "RuntimeError" in caplog.text and "store gone" not in caplog.text and "\x1b" not in caplog.text
    cache.get("7d", lambda: "old")
    clock.now += 60
    assert cache.get("7d", Runs(fail=True)) == "old"  # another key: served, its run failing too
    assert poll(lambda: cache.failures == 2 and cache.running() == 0, interval=0.005)
    clock.now += 300  # too old to serve: the caller computes, and sees its error
    with pytest.raises(RuntimeError, match="store gone"):
        cache.get("7d", Runs(fail=True))


def test_past_stale_the_caller_waits_for_a_fresh_result() -> None:
    clock = Clock()
    cache = StaleWhileRevalidate(30, 300, clock)
    cache.get("7d", lambda: "old")
    clock.now += 300
    runs = Runs()
    assert cache.get("7d", runs) == "result 1" and runs.calls == 1 and cache.running() == 0


def test_results_past_stale_are_let_go() -> None:
    clock = Clock()
    cache = StaleWhileRevalidate(30, 300, clock)
    for i in range(50):  # custom windows: a key each
        cache.get(("custom", i), lambda: "x" * 1000)
    clock.now += 301
    cache.get("7d", lambda: "new")
    assert len(cache._kept) == 1


def test_bad_bounds_are_refused() -> None:
    with pytest.raises(ValueError):
        StaleWhileRevalidate(30, 10)
    with pytest.raises(ValueError):
        StaleWhileRevalidate(0, 10)
