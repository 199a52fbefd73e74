"""A demo store (the real demo, compacted) plus hostile and older events as its uncompacted tail,
and a real ``mcplens dashboard`` process over it."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mcplens import event as ev
from mcplens.cli import main
from mcplens.store.local import LocalStore
from tests.store import factory

REPO = Path(__file__).resolve().parents[2]

#: names a client or server chooses: each must show as text, never run
XSS_TOOL = "<img src=x onerror=alert(1)>"
XSS_CLIENT = "<script>alert('client')</script>"
XSS_SERVER = '"><svg onload=alert(2)>'
XSS_MESSAGE = "<img src=y onerror=alert(3)> failed"
XSS_ARG = "<iframe src=javascript:alert(4)>"
XSS_SESSION = "xss-session-<b>1</b>"


def cli(home: Path, *args: str) -> Any:
    """``mcplens ARGS --json``: its parsed output (in-process: the same entry point, without paying
    a Python and DuckDB start per call)."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main([*args, "--home", str(home), "--json"])
    assert rc == 0, buf.getvalue()
    return json.loads(buf.getvalue())


def hostile_and_older(now: float) -> list[dict[str, Any]]:
    """Hostile names in every place a name shows, some 3-5 hours old (so 15 min and 24 h differ)."""
    out = []
    for i in range(12):
        t = now - 3 * 3600 - i * 600
        e = factory.request(t, target=XSS_TOOL, server=XSS_SERVER, session=XSS_SESSION,
                            client=(XSS_CLIENT, "6.6.6"), status=ev.TOOL_ERROR if i % 3 == 0 else ev.OK,
                            duration=0.02 + i * 0.01, size=300 + i)
        e[ev.ARGUMENTS] = {"q": XSS_ARG}
        if e[ev.STATUS] != ev.OK:
            e[ev.ERROR_MESSAGE] = XSS_MESSAGE
        out.append(e)
        out.append(factory.request(t + 1, target="search_docs", server=XSS_SERVER, session=XSS_SESSION,
                                   client=(XSS_CLIENT, "6.6.6"), duration=0.03))
    return out


@dataclass
class Dashboard:
    url: str
    proc: subprocess.Popen[str]
    token: str | None = None


def start(home: Path, host: str = "127.0.0.1") -> Dashboard:
    proc = subprocess.Popen(
        [sys.executable, "-m", "mcplens.cli", "dashboard", "--home", str(home), "--host", host, "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    assert proc.stdout is not None and proc.stderr is not None
    line = proc.stdout.readline()  # printed once the socket listens (before it serves)
    m = re.search(r"(http://\S+/)", line)
    assert m, (line, proc.stderr.read() if proc.poll() is not None else "")
    token = None
    if host != "127.0.0.1":
        err = proc.stderr.readline() + proc.stderr.readline()
        t = re.search(r"\?token=(\S+)", err)
        assert t, err
        token = t.group(1)
    return Dashboard(m.group(1), proc, token)


def stop(d: Dashboard) -> None:
    d.proc.terminate()
    try:
        d.proc.wait(10)
    except subprocess.TimeoutExpired:
        d.proc.kill()
        d.proc.wait(10)


@pytest.fixture(scope="session")
def demo_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo at a tenth of its traffic, compacted (rollups), then a tail of hostile/older events."""
    pytest.importorskip("mcp")
    home = tmp_path_factory.mktemp("dash") / "home"
    env = {**os.environ, "MCPLENS_HOME": str(home), "MCPLENS_DEMO_SCALE": "0.1"}
    env.pop("MCPLENS_DISABLED", None)
    proc = subprocess.run([sys.executable, "-m", "examples.demo"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert LocalStore(home).compact().events > 0
    now = time.time()
    factory.write(home, hostile_and_older(now), instance="feedfacefeedface")
    factory.write(home, [factory.health("feedfacefeedface", now - 3 * 3600, server=XSS_SERVER, enqueued=24,
                                        written=24)], instance="feedfacefeedface")
    return home


@pytest.fixture(scope="module")
def dashboard(demo_home: Path) -> Iterator[Dashboard]:
    d = start(demo_home)
    yield d
    stop(d)
