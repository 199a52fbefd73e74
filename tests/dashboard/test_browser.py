"""Every page in a real Chromium (Debian's, driven by playwright; never a downloaded browser).

One browser for the module. Each page must load with no console error and no script error; the
screenshots in docs/dashboard/ are the ones taken here.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests.dashboard.conftest import (
    REPO,
    XSS_ARG,
    XSS_CLIENT,
    XSS_MESSAGE,
    XSS_SERVER,
    XSS_SESSION,
    XSS_TOOL,
    Dashboard,
    cli,
)

CHROMIUM = os.environ.get("MCPLENS_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
SHOTS = REPO / "docs" / "dashboard"
PAGES = {"overview": "/", "tools": "/tools", "clients": "/clients", "sessions": "/sessions", "flows": "/flows",
         "security": "/security", "health": "/health", "alerts": "/alerts"}

sync_api = pytest.importorskip("playwright.sync_api")
if not (shutil.which(CHROMIUM) or Path(CHROMIUM).is_file()):
    pytest.skip(f"no Chromium at {CHROMIUM} (make test installs Debian's chromium as root)", allow_module_level=True)


class Watched:
    """A page whose console errors, script errors and dialogs are recorded."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        page.on("console", lambda m: self.errors.append(f"console: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))
        page.on("dialog", self._dialog)

    def _dialog(self, d: Any) -> None:
        self.dialogs.append(d.message)
        d.dismiss()

    def open(self, url: str) -> None:
        """Go to ``url`` and wait until the page (and its late parts, the findings) has drawn."""
        self.page.goto(url)
        self.page.wait_for_selector("body[data-loaded]", state="attached", timeout=60_000)
        self.page.wait_for_selector("#findings .pending", state="detached", timeout=60_000)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Watched]:
    ctx = browser.new_context(viewport={"width": 1280, "height": 800})
    ctx.route("**/*", lambda route: route.continue_() if route.request.url.startswith(("http://127.0.0.1",
                                                                                      "data:")) else route.abort())
    ctx.set_default_timeout(90_000)  # a shared, loaded CI machine: pages wait on DuckDB
    w = Watched(ctx.new_page())
    yield w
    ctx.close()


def test_every_page_loads_without_errors_and_is_photographed(page: Watched, dashboard: Dashboard) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    for name, path in PAGES.items():
        page.open(f"{dashboard.url.rstrip('/')}{path}?since=24h")
        assert page.page.locator("#error").is_hidden(), (name, page.page.locator("#error").text_content())
        assert page.page.locator(f"#nav a[data-page={name}]").get_attribute("class") == "active"
        page.page.screenshot(path=str(SHOTS / f"{name}.png"))
    page.open(f"{dashboard.url}tools?since=24h&tool=search_docs")
    assert page.page.locator("[data-hist=latency] .hbar").count() > 0
    page.page.screenshot(path=str(SHOTS / "tool.png"))
    sid = cli(Path(dashboard_home(dashboard)), "sessions", "--since", "24h")[0]["session_id"]
    page.open(f"{dashboard.url}session?since=24h&id={sid}")
    page.page.screenshot(path=str(SHOTS / "session.png"))
    assert page.errors == [], page.errors
    assert page.dialogs == []


def dashboard_home(d: Dashboard) -> str:
    args = d.proc.args
    return args[args.index("--home") + 1]


def _table(page: Any) -> dict[tuple[str, str], dict[str, str]]:
    """The Tools table as shown: (server, tool) -> column -> text."""
    rows = page.locator("table[data-table=tools] tbody tr")
    out = {}
    for i in range(rows.count()):
        r = rows.nth(i)
        cells = {c.get_attribute("data-col"): c.text_content() for c in r.locator("td").all()}
        out[(cells.get("server", "-"), cells["name"])] = cells
    return out


def half_up(v: float, step: str) -> Decimal:
    """The page's rounding (JavaScript's toFixed and Math.round: halves up), of the exact double."""
    return Decimal(v).quantize(Decimal(step), rounding=ROUND_HALF_UP)


def _label(r: dict[str, Any]) -> str:
    if r["target"] is None:
        return r["method"]
    return r["target"] if r["method"] == "tools/call" else f"{r['method']} {r['target']}"


def test_tools_page_equals_report_json_and_the_picker_changes_it(page: Watched, dashboard: Dashboard) -> None:
    home = Path(dashboard_home(dashboard))
    for since in ("24h", "15m"):
        if since == "24h":
            page.open(f"{dashboard.url}tools?since=24h")
        else:  # through the window picker, as a user does
            before = page.page.evaluate("document.body.dataset.loaded")
            page.page.select_option("#win", "15m")
            page.page.wait_for_url("**since=15m**")
            page.page.wait_for_selector(f'body:not([data-loaded="{before}"])', state="attached")
        report = cli(home, "report", "--since", since)
        multi = len({r["server"] for r in report}) > 1
        shown = _table(page.page)
        assert set(shown) == {((r["server"] or "-") if multi else "-", _label(r)) for r in report}
        for r in report:
            cells = shown[((r["server"] or "-") if multi else "-", _label(r))]
            assert cells["calls"] == f"{r['calls']:,}", r
            assert cells["errors"] == f"{r['errors']:,}", r
            assert cells["error_rate"] == f"{half_up(r['error_rate'] * 100, '0.1')}%", r
            for col in ("p50_ms", "p95_ms", "p99_ms", "mean_ms"):
                assert cells[col] == ("-" if r[col] is None else f"{half_up(r[col], '0.01')}"), (col, r)
            for col in ("payload_p50_bytes", "payload_p95_bytes", "payload_max_bytes"):
                assert cells[col] == ("-" if r[col] is None else f"{half_up(r[col], '1'):,} B"), (col, r)
        names = {name for _, name in shown}
        if since == "24h":
            assert XSS_TOOL in names  # 3 h old: in the day, not in the last 15 minutes
        else:
            assert XSS_TOOL not in names
    assert page.errors == []


def test_hostile_names_render_as_text(page: Watched, dashboard: Dashboard) -> None:
    base = dashboard.url
    page.open(f"{base}tools?since=24h&tool={quote(XSS_TOOL)}")
    assert page.page.locator("table[data-table=tools] td[data-col=name]", has_text=XSS_TOOL).count() == 1
    assert page.page.locator("table[data-table=tools] td[data-col=server]", has_text=XSS_SERVER).count() >= 1
    assert page.page.locator("[data-tool]").text_content() == XSS_TOOL
    assert page.page.locator("table[data-table=errors] td[data-col=message]").first.text_content() == XSS_MESSAGE
    page.open(f"{base}clients?since=24h")
    assert page.page.locator("table[data-table=clients] td[data-col=client]", has_text=XSS_CLIENT).count() == 1
    page.open(f"{base}sessions?since=24h")
    assert page.page.locator(f"a[data-session='{XSS_SESSION}']").count() == 1
    page.open(f"{base}session?since=24h&id={quote(XSS_SESSION)}")
    assert page.page.locator("#session-id").text_content() == XSS_SESSION
    args = page.page.locator("td[data-col=args]").first.text_content()
    assert XSS_ARG in args and XSS_MESSAGE in page.page.locator("table[data-table=timeline]").text_content()
    page.open(f"{base}flows?since=24h")
    assert page.page.locator("svg.flow text", has_text=XSS_TOOL[:20]).count() >= 1
    page.open(f"{base}health?since=24h")
    # nothing became markup: no image, frame, svg from a name, and no script beyond our two
    assert page.page.locator("img, iframe, b").count() == 0
    assert page.page.locator("script").count() == 2
    assert page.dialogs == [] and page.errors == []


def test_session_page_shows_calls_in_order(page: Watched, dashboard: Dashboard) -> None:
    home = Path(dashboard_home(dashboard))
    sessions = cli(home, "sessions", "--since", "24h")
    sid = max(sessions, key=lambda s: s["calls"])["session_id"]
    events = cli(home, "sessions", sid)
    page.open(f"{dashboard.url}session?since=24h&id={sid}")
    rows = page.page.locator("table[data-table=timeline] tbody tr")
    assert rows.count() == len(events) > 3
    shown = [(rows.nth(i).get_attribute("data-event"), rows.nth(i).locator("td[data-col=target]").text_content())
             for i in range(rows.count())]
    assert shown == [(e["event_id"], e.get("target") or "-") for e in events]
    times = [e["time"] for e in events]
    assert times == sorted(times)


VISIBILITY = """s => { Object.defineProperty(document, 'visibilityState', {value: s, configurable: true});
                     document.dispatchEvent(new Event('visibilitychange')); }"""


def test_refresh_is_live_and_pauses_when_hidden(page: Watched, dashboard: Dashboard) -> None:
    page.open(f"{dashboard.url}?since=1h")
    assert page.page.locator("#live").get_attribute("data-state") == "live"
    page.page.evaluate(VISIBILITY, "hidden")
    assert page.page.locator("#live").get_attribute("data-state") == "paused"
    page.page.evaluate(VISIBILITY, "visible")
    page.page.wait_for_selector("#live[data-state=live]", state="attached")
    # a fixed range does not refresh
    page.page.select_option("#win", "custom")
    page.page.click("#apply")
    page.page.wait_for_url("**until=**")
    page.page.wait_for_selector("#live[data-state=fixed]", state="attached")
    assert page.errors == []
