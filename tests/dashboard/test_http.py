"""The dashboard over HTTP, as a real process: its API equals the CLI's --json; it is read only,
answers only to loopback names on 127.0.0.1, and wants the token anywhere else."""

from __future__ import annotations

import http.client
import json
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest

from tests.dashboard.conftest import XSS_SERVER, XSS_TOOL, Dashboard, cli, start, stop

pytest.importorskip("starlette")


def request(url: str, path: str, method: str = "GET", headers: dict[str, str] | None = None,
            body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    u = urlsplit(url)
    con = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    try:
        con.request(method, path, body=body, headers=headers or {})
        r = con.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        con.close()


def get_json(d: Dashboard, path: str) -> Any:
    status, _, body = request(d.url, path)
    assert status == 200, body
    return json.loads(body)


def test_api_rows_equal_the_cli_json(dashboard: Dashboard, demo_home: Path) -> None:
    for since in ("24h", "15m"):
        assert get_json(dashboard, f"/api/tools?since={since}") == cli(demo_home, "report", "--since", since)
    tools = get_json(dashboard, "/api/tools?since=24h")
    assert XSS_TOOL in {r["name"] for r in tools}  # the tail (not compacted) is in it too
    assert get_json(dashboard, "/api/tools?since=24h&sort=p95") == cli(demo_home, "report", "--since", "24h",
                                                                       "--sort", "p95")
    assert get_json(dashboard, f"/api/tools?since=24h&server={quote(XSS_SERVER)}") == cli(
        demo_home, "report", "--since", "24h", "--server", XSS_SERVER)
    assert get_json(dashboard, "/api/sessions?since=24h") == cli(demo_home, "sessions", "--since", "24h")
    assert get_json(dashboard, "/api/health?since=24h") == cli(demo_home, "health", "--since", "24h")
    sid = cli(demo_home, "sessions", "--since", "24h")[0]["session_id"]
    assert get_json(dashboard, f"/api/session?id={sid}")["events"] == cli(demo_home, "sessions", sid)
    assert get_json(dashboard, "/api/insights?since=24h") == cli(demo_home, "insights", "--since", "24h")


def test_chart_totals_match_the_tool_table(dashboard: Dashboard, demo_home: Path) -> None:
    """The series (rollups of the compacted demo + the cached rows of the tail) count the same calls,
    from the 5-minute rows (24 h: 288 slots) and from the hourly ones (30 d: slots of hours)."""
    every = cli(demo_home, "report")  # the store holds a few hours: both windows see all of it
    for since, step in (("24h", 300.0), ("30d", 3 * 3600.0)):
        o = get_json(dashboard, f"/api/overview?since={since}")
        assert o["step_s"] == step
        assert o["totals"]["calls"] == sum(r["calls"] for r in every)
        assert o["totals"]["errors"] == sum(r["errors"] for r in every)
        assert max(o["active_sessions"]) >= 1
        for name in ("search_docs", XSS_TOOL):
            one = get_json(dashboard, f"/api/tool?since={since}&tool={quote(name)}")
            rows = [r for r in every if r["name"] == name]
            assert sum(one["calls"]) == sum(r["calls"] for r in rows) > 0
            assert sum(b["n"] for b in one["latency_histogram"]) == sum(r["calls"] for r in rows)
            worst = max(r["p99_ms"] for r in rows)  # the top bucket holds the slowest call, >= any p99
            assert one["latency_histogram"][-1]["hi"] >= worst


def test_bad_input_is_400_not_500(dashboard: Dashboard) -> None:
    for path in ("/api/tools?since=yesterday-ish", "/api/tools?sort=nope", "/api/sessions?limit=x", "/api/tool",
                 "/api/tool_errors", "/api/session?id="):
        status, _, body = request(dashboard.url, path)
        assert status == 400, (path, body)
        assert "error" in json.loads(body)
    assert request(dashboard.url, "/api/session?id=no-such-session")[0] == 404
    assert request(dashboard.url, "/api/nope")[0] == 404


def test_read_only_and_headers(dashboard: Dashboard) -> None:
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        for path in ("/api/tools", "/", "/static/app.js"):
            status, headers, _ = request(dashboard.url, path, method, body=b"{}")
            assert status == 405, (method, path)
            assert headers["allow"] == "GET, HEAD"
    status, headers, body = request(dashboard.url, "/tools")
    assert status == 200 and b"<script src=\"/static/app.js\"></script>" in body
    csp = headers["content-security-policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp and "unsafe-inline" not in csp
    assert headers["x-content-type-options"] == "nosniff"
    assert b"<script>" not in body and b"style=" not in body  # nothing inline for the CSP to allow
    status, headers, body = request(dashboard.url, "/static/vendor/uPlot.iife.min.js")
    assert status == 200 and len(body) > 10_000


def test_loopback_answers_only_to_loopback_names(dashboard: Dashboard) -> None:
    """A DNS-rebinding page reaches 127.0.0.1 under its own host name: refused."""
    assert request(dashboard.url, "/api/tools", headers={"Host": "evil.example:80"})[0] == 403
    assert request(dashboard.url, "/api/tools", headers={"Host": "localhost"})[0] == 200


@pytest.fixture(scope="module")
def remote(demo_home: Path) -> Any:
    d = start(demo_home, host="127.0.0.2")  # not 127.0.0.1: a token is required
    yield d
    stop(d)


def test_off_loopback_the_token_is_required(remote: Dashboard) -> None:
    assert remote.token and len(remote.token) >= 24
    for path in ("/", "/tools", "/api/tools", "/static/app.js"):
        assert request(remote.url, path)[0] == 401, path
    assert request(remote.url, "/api/tools", headers={"Cookie": f"{cookie(remote)}=wrong"})[0] == 403
    assert request(remote.url, "/?token=wrong")[0] == 403
    assert request(remote.url, "/api/tools", "POST")[0] == 405

    status, headers, _ = request(remote.url, f"/tools?since=1h&token={remote.token}")
    assert status == 303
    assert headers["location"] == "/tools?since=1h"  # the token leaves the address bar
    set_cookie = headers["set-cookie"]
    assert set_cookie.startswith(f"{cookie(remote)}={remote.token};")
    assert "HttpOnly" in set_cookie and "SameSite=Strict" in set_cookie
    with_cookie = {"Cookie": f"{cookie(remote)}={remote.token}"}
    status, headers, body = request(remote.url, "/api/tools?since=24h", headers=with_cookie)
    assert status == 200 and isinstance(json.loads(body), list)
    assert "content-security-policy" in headers
    # any Host: the token, not the name, is the gate off loopback
    assert request(remote.url, "/api/tools", headers={**with_cookie, "Host": "dash.example"})[0] == 200


def cookie(d: Dashboard) -> str:
    return f"mcplens_token_{urlsplit(d.url).port}"
