"""The mcplens demo: five simulated AI agents drive an instrumented MCP server, then `mcplens report`.

    python -m examples.demo             # or: make demo          (~1 minute)
    python -m examples.demo --quick     # a tenth of the traffic (~10 s)

What runs:
  * three stdio servers (``python -m examples.demo_server``), one per desktop-style client:
    claude-desktop (initialize handshake), cursor and research-agent (stateless 2026-07-28 era);
  * one streamable-HTTP server on a free 127.0.0.1 port, shared by two concurrent agents.

Each agent lists the tools and then loops over realistic workflows (search then fetch, repeated
database queries, file reads, chat messages, a resource read, a prompt), with the odd unknown tool
and bad argument a model produces. Every loop has a call budget and a deadline. Events land in
``$MCPLENS_HOME`` if set, else in ``./.mcplens-demo`` (wiped at the start of each run).
Progress goes to stderr; the report and the "what next" text go to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ("search_docs", "query_database", "fetch_url", "read_file", "send_message")
CALL_TIMEOUT = 15.0  # seconds for any single request; the slowest simulated call takes ~2 s


@dataclass
class Agent:
    name: str
    version: str
    transport: str  # "stdio" | "http"
    mode: str  # "legacy" (initialize handshake) | "auto" (2026-07-28 stateless era when offered)
    budget: int  # calls at full scale
    style: str  # which workflows it favours
    calls: int = 0
    tool_errors: int = 0
    rpc_errors: int = 0
    seconds: float = 0.0
    protocol: str = "?"
    failed: str | None = None
    rng: random.Random = field(default_factory=random.Random)


AGENTS = (
    Agent("claude-desktop", "0.14.2", "stdio", "legacy", 420, "assistant"),
    Agent("cursor", "1.7.3", "stdio", "auto", 520, "coder"),
    Agent("research-agent", "0.3.0", "stdio", "auto", 440, "researcher"),
    Agent("support-bot", "2.1.0", "http", "legacy", 420, "support"),
    Agent("analytics-agent", "0.9.1", "http", "auto", 460, "analyst"),
)

# workflow weights per style
STYLES: dict[str, dict[str, int]] = {
    "assistant": {"research": 5, "analytics": 2, "code": 2, "notify": 2, "docs": 2, "prompt": 1, "oops": 1},
    "coder": {"research": 2, "analytics": 1, "code": 7, "notify": 1, "docs": 2, "prompt": 1, "oops": 1},
    "researcher": {"research": 8, "analytics": 1, "code": 1, "notify": 1, "docs": 3, "prompt": 1, "oops": 1},
    "support": {"research": 4, "analytics": 2, "code": 1, "notify": 4, "docs": 3, "prompt": 2, "oops": 1},
    "analyst": {"research": 1, "analytics": 8, "code": 1, "notify": 2, "docs": 1, "prompt": 1, "oops": 1},
}

QUERIES = (
    "rotate api key", "rate limits per plan", "deploy rollback", "oauth service account", "invoice usage pricing",
    "incident paging", "python sdk install", "traces and metrics", "quota exceeded error", "acmectl deploy",
)
SQL = (
    "SELECT status, count(*) FROM orders WHERE created_at > now() - interval '1 day' GROUP BY status",
    "SELECT customer_id, sum(amount) FROM invoices GROUP BY customer_id ORDER BY 2 DESC LIMIT 20",
    "SELECT * FROM deployments WHERE service = 'billing' ORDER BY started_at DESC LIMIT 10",
    "WITH t AS (SELECT * FROM tickets WHERE priority = 'p1') SELECT count(*) FROM t",
    "SELECT date_trunc('hour', ts), count(*) FROM events GROUP BY 1 ORDER BY 1",
    "EXPLAIN SELECT * FROM orders JOIN customers USING (customer_id)",
)
PATHS = ("src/billing/handler.py", "src/api/routes.py", "services/auth/config.yaml", "README.md", "infra/main.tf")
CHANNELS = ("#eng-oncall", "#billing", "#support", "#deploys")
SLUGS = ("getting-started", "auth", "billing", "deploy", "observability", "incident-runbook", "rate-limits")
SERVICES = ("billing", "auth", "api-gateway", "search")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# One agent
# --------------------------------------------------------------------------------------------


class Session:
    """Counts every request an agent makes and keeps each one inside the budget and deadline."""

    def __init__(self, agent: Agent, client: Any, budget: int, deadline: float) -> None:
        self.agent, self.client, self.budget, self.deadline = agent, client, budget, deadline

    @property
    def done(self) -> bool:
        return self.agent.calls >= self.budget or time.monotonic() >= self.deadline

    async def request(self, make: Callable[[], Awaitable[Any]]) -> Any:
        """One request. Tool failures come back as results; protocol errors are counted, not raised."""
        from mcp import MCPError

        self.agent.calls += 1
        try:
            result = await asyncio.wait_for(make(), CALL_TIMEOUT)
        except MCPError:
            self.agent.rpc_errors += 1
            return None
        if getattr(result, "is_error", False):
            self.agent.tool_errors += 1
        return result

    async def tool(self, name: str, arguments: dict[str, Any]) -> str | None:
        result = await self.request(lambda: self.client.call_tool(name, arguments))
        if result is None or result.is_error:
            return None
        return "".join(getattr(block, "text", "") for block in result.content)


async def research(s: Session, rng: random.Random) -> None:
    text = await s.tool("search_docs", {"query": rng.choice(QUERIES), "limit": rng.choice((3, 5, 10))})
    if text is None or s.done:
        return
    urls = [hit["url"] for hit in json.loads(text)["results"]][: rng.randint(1, 3)]
    if s.agent.style == "researcher" and len(urls) > 1:  # fans out, several fetches in flight at once
        await asyncio.gather(*(s.tool("fetch_url", {"url": u}) for u in urls))
    else:
        for url in urls:
            if s.done:
                return
            await s.tool("fetch_url", {"url": url})


async def analytics(s: Session, rng: random.Random) -> None:
    for _ in range(rng.randint(2, 5)):  # refine the query a few times
        if s.done:
            return
        await s.tool("query_database", {"sql": rng.choice(SQL)})
    if rng.random() < 0.3 and not s.done:
        # personal data in an argument, as agents do send it: stored as [EMAIL], never as the address
        cc = rng.choice(("dana.ops@example.com", "lee.finance@example.org"))
        await s.tool("send_message", {"channel": rng.choice(CHANNELS), "text": f"Daily numbers are in, cc {cc}"})


async def code(s: Session, rng: random.Random) -> None:
    for _ in range(rng.randint(1, 3)):
        if s.done:
            return
        path = rng.choice(PATHS) if rng.random() > 0.05 else "src/missing/old_module.py"
        await s.tool("read_file", {"path": path})
    if rng.random() < 0.4 and not s.done:
        await s.tool("search_docs", {"query": rng.choice(QUERIES), "limit": 5})


async def notify(s: Session, rng: random.Random) -> None:
    await s.tool("send_message", {"channel": rng.choice(CHANNELS), "text": "Status update: investigating."})


async def docs(s: Session, rng: random.Random) -> None:
    slug = rng.choice(SLUGS) if rng.random() > 0.1 else "legacy-v1-api"  # an old link now and then
    await s.request(lambda: s.client.read_resource(f"docs://page/{slug}"))


async def prompt(s: Session, rng: random.Random) -> None:
    args = {"service": rng.choice(SERVICES), "severity": rng.choice(("sev1", "sev2", "sev3"))}
    await s.request(lambda: s.client.get_prompt("triage_incident", args))


async def oops(s: Session, rng: random.Random) -> None:
    """What models get wrong: a tool that does not exist, or arguments that do not fit."""
    mistakes: list[tuple[str, dict[str, Any]]] = [
        (rng.choice(("search_web", "run_shell", "query_db", "get_weather")), {"q": "status"}),
        ("search_docs", {"query": "deploy", "limit": "ten"}),
        ("query_database", {"query": "SELECT 1"}),
        ("fetch_url", {"url": "docs.acme.dev/deploy"}),
        ("send_message", {"channel": "eng-oncall", "text": "hi"}),
        ("query_database", {"sql": "DELETE FROM orders"}),
    ]
    name, arguments = rng.choice(mistakes)
    await s.tool(name, arguments)


WORKFLOWS = {"research": research, "analytics": analytics, "code": code, "notify": notify, "docs": docs,
             "prompt": prompt, "oops": oops}


async def run_agent(agent: Agent, target: Any, budget: int, deadline: float) -> None:
    from mcp import Client
    from mcp.types import Implementation

    start = time.monotonic()
    info = Implementation(name=agent.name, version=agent.version)
    weights = STYLES[agent.style]
    names, w = list(weights), list(weights.values())
    try:
        async with Client(target, mode=agent.mode, client_info=info, cache=None,
                          read_timeout_seconds=CALL_TIMEOUT) as client:
            agent.protocol = client.protocol_version
            s = Session(agent, client, budget, deadline)
            await s.request(client.list_tools)
            while not s.done:
                if agent.rng.random() < 0.03:
                    await s.request(client.list_tools)  # clients re-list now and then
                    continue
                await WORKFLOWS[agent.rng.choices(names, w)[0]](s, agent.rng)
                await asyncio.sleep(agent.rng.uniform(0.0, 0.01))  # the model "thinking", compressed
    except Exception as exc:  # noqa: BLE001 - one broken agent must not hide the others' results
        agent.failed = f"{type(exc).__name__}: {exc}"
    agent.seconds = time.monotonic() - start
    status = f"FAILED ({agent.failed})" if agent.failed else "done"
    log(f"  {agent.name:<16} {agent.transport:<5} {agent.protocol:<11} {agent.calls:5d} calls "
        f"{agent.tool_errors:4d} tool errors {agent.rpc_errors:3d} protocol errors {agent.seconds:5.1f}s  {status}")


# --------------------------------------------------------------------------------------------
# Servers
# --------------------------------------------------------------------------------------------


def child_env(home: Path, seed: int) -> dict[str, str]:
    """What a server process needs: the data dir, its seed, and every MCPLENS_* the user set."""
    env = {k: v for k, v in os.environ.items() if k.startswith("MCPLENS_")}
    env["MCPLENS_HOME"] = str(home)
    env["ACME_SEED"] = str(seed)
    paths = [str(ROOT / "src"), str(ROOT)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the HTTP demo server exited early (code {proc.returncode})")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"the HTTP demo server did not listen on 127.0.0.1:{port} within {timeout:.0f}s")


def stop(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM (mcplens flushes on it), then SIGKILL if the server does not go."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


async def progress(agents: list[Agent], total: int, start: float) -> None:
    while True:
        await asyncio.sleep(5)
        calls = sum(a.calls for a in agents)
        log(f"  [{time.monotonic() - start:4.0f}s] {calls:5d}/{total} calls")


async def drive(home: Path, scale: float, seed: int, duration: float) -> list[Agent]:
    from mcp import StdioServerParameters

    agents = [Agent(**{k: getattr(a, k) for k in ("name", "version", "transport", "mode", "budget", "style")})
              for a in AGENTS]
    for i, agent in enumerate(agents):
        agent.rng = random.Random(seed * 1000 + i)
    budgets = [max(10, round(a.budget * scale)) for a in agents]
    total = sum(budgets)
    port = free_port()
    cmd = [sys.executable, "-m", "examples.demo_server"]
    http = subprocess.Popen([*cmd, "--http", str(port)], cwd=ROOT, env={**os.environ, **child_env(home, seed)})
    try:
        wait_for_port(port, http, timeout=30)
        url = f"http://127.0.0.1:{port}/mcp"
        log(f"mcplens demo: 3 stdio servers + 1 HTTP server ({url}), {len(agents)} agents, ~{total} calls")
        start = time.monotonic()
        deadline = start + duration
        tasks = []
        for i, (agent, budget) in enumerate(zip(agents, budgets, strict=True)):
            if agent.transport == "stdio":
                target: Any = StdioServerParameters(command=sys.executable, args=cmd[1:], cwd=ROOT,
                                                    env=child_env(home, seed + 1 + i))
            else:
                target = url
            tasks.append(run_agent(agent, target, budget, deadline))
        ticker = asyncio.create_task(progress(agents, total, start))
        try:  # hard stop well after the agents' own deadline, should anything hang
            await asyncio.wait_for(asyncio.gather(*tasks), duration + 3 * CALL_TIMEOUT)
        finally:
            ticker.cancel()
        log(f"  all agents finished: {sum(a.calls for a in agents)} calls in {time.monotonic() - start:.1f}s")
    finally:
        stop(http)  # the stdio servers already exited: each client closed its server's stdin
    return agents


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def fallback_report(home: Path) -> int:
    """A minimal per-tool table straight from the JSON lines, for when the CLI is not there."""
    rows: dict[str, list[tuple[float, str]]] = {}
    for path in sorted((home / "events").rglob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                e = json.loads(line)
            except ValueError:
                continue
            if e.get("mcp.method.name") == "tools/call":
                rows.setdefault(e.get("gen_ai.tool.name", "?"), []).append((e["duration_s"], e.get("mcplens.status")))
    print(f"{'tool':<18}{'calls':>7}{'errors':>8}{'p50 ms':>9}{'p95 ms':>9}")
    for tool, vals in sorted(rows.items(), key=lambda kv: -len(kv[1])):
        d = sorted(v[0] for v in vals)
        errors = sum(1 for v in vals if v[1] != "ok")
        p50, p95 = d[len(d) // 2] * 1000, d[min(len(d) - 1, int(len(d) * 0.95))] * 1000
        print(f"{tool:<18}{len(vals):>7}{errors:>8}{p50:>9.1f}{p95:>9.1f}")
    return 0


def report(home: Path) -> int:
    print()
    if importlib.util.find_spec("mcplens.cli") is not None:
        from mcplens.cli import main as cli

        print(f"$ mcplens report --home {home}\n")
        sys.stdout.flush()
        return cli(["report", "--home", str(home)])
    print("(mcplens.cli is not installed; a plain summary from the event files instead)\n")
    return fallback_report(home)


def what_next(home: Path, default_home: bool) -> None:
    shown = os.path.relpath(home) if home.is_relative_to(Path.cwd()) else str(home)
    env = (f"  export MCPLENS_HOME={shown}        # point the CLI at the demo's data (or pass --home {shown})\n"
           if default_home else "")
    print(f"""
What next (the CLI is in the virtualenv: `source .venv/bin/activate` first)
{env}  mcplens report --sort p99     the slowest tools first: query_database has a 1-2 s tail
  mcplens sessions              one line per client session; add a session id to see its calls
  mcplens tail                  follow events live while you use your own server
  mcplens dashboard             all of it as web pages on http://127.0.0.1:8765/ (`make demo` starts it)
  Without MCPLENS_HOME (or --home) the CLI reads your real data directory, not the demo's.

Monitor your own server: add one line after you create it (mcp SDK MCPServer/Server, or FastMCP):

    import mcplens
    mcplens.instrument(server)

then run it as usual and `mcplens report`. The demo server is examples/demo_server.py.""")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m examples.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the traffic (same as --scale 0.1)")
    parser.add_argument("--scale", type=float, default=float(os.environ.get("MCPLENS_DEMO_SCALE") or 1.0),
                        help="traffic multiplier (env MCPLENS_DEMO_SCALE; default 1.0)")
    parser.add_argument("--seed", type=int, default=42, help="seed for the agents and the servers (default 42)")
    args = parser.parse_args(argv)
    scale = 0.1 if args.quick else args.scale
    if not 0 < scale <= 10:
        parser.error("--scale must be in (0, 10]")
    duration = min(60.0, max(12.0, 55.0 * scale))  # the agents' deadline; budgets usually end them first

    user_home = os.environ.get("MCPLENS_HOME")
    if user_home:
        home = Path(user_home).expanduser().resolve()
    else:
        home = (Path.cwd() / ".mcplens-demo").resolve()
        shutil.rmtree(home, ignore_errors=True)
        os.environ["MCPLENS_HOME"] = str(home)  # the report below and anything else in-process read it
    home.mkdir(parents=True, exist_ok=True)

    t0 = time.monotonic()
    agents = asyncio.run(drive(home, scale, args.seed, duration))
    log(f"  servers stopped; {time.monotonic() - t0:.1f}s in all. Events in {home}/events")
    failed = [a for a in agents if a.failed]
    rc = report(home)
    what_next(home, default_home=not user_home)
    if failed:
        log(f"mcplens demo: {len(failed)} agent(s) failed: " + "; ".join(f"{a.name}: {a.failed}" for a in failed))
        return 1
    return rc


if __name__ == "__main__":
    sys.exit(main())
