"""The dashboard's ASGI app: static pages that draw from a read-only JSON API under ``/api/``.

Safety, because every name shown comes from a client or a server and the data is private:

* read only: every route is GET (HEAD); any other method is 405 before routing;
* one HTML shell and one script, no inline script or style, under a strict Content-Security-Policy;
  the script renders event values with ``textContent`` only;
* on 127.0.0.1 (the default) only requests naming a loopback host are served (a DNS-rebinding page
  cannot read the API); on any other address a token is required: given once as ``?token=``, it
  comes back as an HttpOnly, SameSite=Strict cookie, and every request without it is 401 (403 for
  a wrong one).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

from mcplens import safetext, views
from mcplens.dashboard import data
from mcplens.dashboard.cache import StaleWhileRevalidate
from mcplens.store.base import SORTS, Store, TimeWindow

STATIC = Path(__file__).parent / "static"
PAGES = ("/", "/tools", "/clients", "/sessions", "/session", "/flows", "/security", "/health", "/alerts")
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
]
#: the insights over a window take up to a second over a big store: a window's result is served as is
#: for this long (several tabs share one run), then, up to INSIGHTS_STALE, while a fresh run replaces
#: it in the background (a live page refreshes every 15 s: none of its refreshes waits for a run)
INSIGHTS_TTL = 30.0
INSIGHTS_STALE = 300.0


def cookie_name(port: int) -> str:
    """Cookies are not per port: one name per port so two dashboards on one host keep apart."""
    return f"mcplens_token_{port}"


class Guard:
    """ASGI middleware: methods, host, token and the security headers, before any route runs."""

    def __init__(self, app: Any, *, token: str | None, port: int) -> None:
        self.app = app
        self.token = token
        self.cookie = cookie_name(port)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if scope["method"] not in ("GET", "HEAD"):
            await _plain(send, 405, "read only: GET only\n", [(b"allow", b"GET, HEAD")])
            return
        if self.token is None:
            host = headers.get("host", "")
            name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
            if name.lower() not in LOOPBACK_NAMES:
                await _plain(send, 403, "this dashboard answers only to 127.0.0.1 / localhost\n")
                return
        else:
            cookies = SimpleCookie()
            try:
                cookies.load(headers.get("cookie", ""))
            except Exception:  # noqa: BLE001 - a malformed cookie header is no cookie
                cookies = SimpleCookie()
            have = cookies[self.cookie].value if self.cookie in cookies else None
            query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
            given = next((v for k, v in query if k == "token"), None)
            if given is not None:
                if not hmac.compare_digest(given.encode(), self.token.encode()):
                    await _plain(send, 403, "wrong token\n")
                    return
                rest = urlencode([(k, v) for k, v in query if k != "token"])
                location = scope.get("path", "/") + (f"?{rest}" if rest else "")
                set_cookie = f"{self.cookie}={self.token}; HttpOnly; SameSite=Strict; Path=/"
                await _plain(send, 303, "", [(b"location", location.encode()), (b"set-cookie", set_cookie.encode())])
                return
            if have is None:
                await _plain(send, 401, "a token is required: open the address printed when the dashboard started\n")
                return
            if not hmac.compare_digest(have.encode(), self.token.encode()):
                await _plain(send, 403, "wrong token\n")
                return

        async def send_with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *HEADERS]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


async def _plain(send: Any, status: int, body: str, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    payload = body.encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                            (b"content-length", str(len(payload)).encode()), *HEADERS, *(extra or [])]})
    await send({"type": "http.response.body", "body": payload})


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def create_app(store: Store, *, home: Path, alerts_config: Path | None = None, insights_config: Path | None = None,
               token: str | None = None, port: int = 0) -> Any:
    """The Starlette app over ``store``, wrapped in :class:`Guard`."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import FileResponse, Response
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    findings = StaleWhileRevalidate(INSIGHTS_TTL, INSIGHTS_STALE)  # the insights per window and server

    def window(req: Request) -> TimeWindow | None:
        since, until = req.query_params.get("since") or None, req.query_params.get("until") or None
        try:
            return TimeWindow.parse(since, until)
        except ValueError as e:
            raise ApiError(400, str(e)) from None

    def server(req: Request) -> str | None:
        return req.query_params.get("server") or None

    def endpoint(fn: Callable[[Request], Any]) -> Callable[[Request], Response]:
        def run(req: Request) -> Response:
            try:
                body = fn(req)
                status = 200
            except ApiError as e:
                body, status = {"error": str(e)}, e.status
            return Response(safetext.dumps(body), status_code=status, media_type="application/json",
                            headers={"cache-control": "no-store"})

        return run

    def tools(req: Request) -> Any:
        sort = req.query_params.get("sort") or "calls"
        if sort not in SORTS:
            raise ApiError(400, f"unknown sort {sort!r}; choose from {', '.join(SORTS)}")
        return data.tools(store, window(req), server(req), sort)

    def tool(req: Request) -> Any:
        name = req.query_params.get("tool")
        if not name:
            raise ApiError(400, "give ?tool=NAME")
        return data.tool_detail(store, window(req), name, server(req))

    def tool_errors(req: Request) -> Any:
        name = req.query_params.get("tool")
        if not name:
            raise ApiError(400, "give ?tool=NAME")
        return data.tool_errors(store, window(req), name, server(req))

    def sessions(req: Request) -> Any:
        raw = req.query_params.get("limit") or "50"
        if not raw.isdigit():
            raise ApiError(400, "limit is a whole number")
        return data.sessions(store, window(req), server(req), int(raw))

    def session(req: Request) -> Any:
        sid = req.query_params.get("id")
        if not sid:
            raise ApiError(400, "give ?id=SESSION")
        try:
            events = data.session(store, sid)
        except views.NoSuchSession:
            raise ApiError(404, "no session matching that id") from None
        except views.AmbiguousSession as e:
            raise ApiError(409, f"that prefix matches {len(e.matches)} sessions; give more of the id") from None
        return {"session": events[0]["session"], "events": events}

    def insights(req: Request) -> Any:
        key = (req.query_params.get("since"), req.query_params.get("until"), server(req))
        window(req)  # a bad window is the caller's error now, not a background run's
        # the window parsed when the run starts: "since=1h" is the hour before each run
        return findings.get(key, lambda: data.insights(store, window(req), server(req), insights_config))

    def missing(req: Request) -> Any:
        raise ApiError(404, "no such endpoint")

    routes = [
        Route("/api/overview", endpoint(lambda r: data.overview(store, window(r), server(r)))),
        Route("/api/tools", endpoint(tools)),
        Route("/api/tool", endpoint(tool)),
        Route("/api/tool_errors", endpoint(tool_errors)),
        Route("/api/clients", endpoint(lambda r: data.series.clients(store, window(r), server(r)))),
        Route("/api/sessions", endpoint(sessions)),
        Route("/api/session", endpoint(session)),
        Route("/api/flows", endpoint(lambda r: data.flows(store, window(r), server(r)))),
        Route("/api/insights", endpoint(insights)),
        Route("/api/health", endpoint(lambda r: data.health(store, window(r)))),
        Route("/api/instances", endpoint(lambda r: data.instances(store, window(r)))),
        Route("/api/alerts", endpoint(lambda r: data.alerts(home, alerts_config))),
        Route("/api/{rest:path}", endpoint(missing)),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
        Route("/favicon.ico", lambda r: FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml")),
        *(Route(p, lambda r: FileResponse(STATIC / "index.html", headers={"cache-control": "no-store"}))
          for p in PAGES),
    ]
    return Guard(Starlette(routes=routes), token=token, port=port)
