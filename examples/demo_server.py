"""acme-tools: a realistic example MCP server, monitored by mcplens with one line.

Everything is simulated (no network, no disk, no database): latencies come from ``asyncio.sleep``
and a seedable RNG, failures are raised as ``ToolError`` so the SDK turns them into ``isError``
results the model can read. Run it as

    python -m examples.demo_server                  # stdio (what Claude Desktop / Cursor launch)
    python -m examples.demo_server --http 8765      # streamable HTTP on http://127.0.0.1:8765/mcp

stdout is the protocol channel under stdio: this module never prints; logs go to stderr at WARNING.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import sys

from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ResourceNotFoundError, ToolError

import mcplens

VERSION = "1.4.2"

server = MCPServer(
    "acme-tools",
    version=VERSION,
    instructions="Internal tools for the Acme engineering team: docs search, analytics DB, web fetch, files, chat.",
    log_level="WARNING",
)
mcplens.instrument(server)  # <- the whole mcplens integration

#: One RNG for the process; ``--seed`` / ``ACME_SEED`` makes a run repeatable (up to scheduling).
rng = random.Random(os.environ.get("ACME_SEED"))


def chance(p: float) -> bool:
    return rng.random() < p


async def work(seconds: float) -> None:
    await asyncio.sleep(max(0.0, seconds))


# --------------------------------------------------------------------------------------------
# Simulated backends
# --------------------------------------------------------------------------------------------

DOCS = {
    "getting-started": "Getting started with the Acme platform",
    "auth": "Authentication: API keys, OAuth and service accounts",
    "billing": "Billing, invoices and usage-based pricing",
    "deploy": "Deploying services with acmectl",
    "observability": "Logs, metrics and traces for Acme services",
    "incident-runbook": "Incident runbook: paging, triage and postmortems",
    "rate-limits": "Rate limits and quotas per plan",
    "sdk-python": "The Python SDK: installation and first request",
}

TABLES = ("orders", "customers", "invoices", "events", "deployments", "tickets")


@server.tool()
async def search_docs(query: str, limit: int = 5) -> str:
    """Full-text search over the internal documentation. Returns titles, slugs and URLs."""
    if limit < 1 or limit > 50:
        raise ToolError("invalid argument: limit must be between 1 and 50")
    await work(rng.uniform(0.005, 0.040))
    words = {w.lower() for w in query.split()}
    scored = sorted(DOCS.items(), key=lambda kv: (-sum(w in kv[1].lower() for w in words), kv[0]))
    hits = [
        {"slug": slug, "title": title, "url": f"https://docs.acme.dev/{slug}", "score": round(rng.random(), 3)}
        for slug, title in scored[: min(limit, len(scored))]
    ]
    return json.dumps({"query": query, "total": len(hits), "results": hits})


@server.tool()
async def query_database(sql: str) -> str:
    """Run a read-only SQL query against the analytics replica."""
    if not sql.strip():
        raise ToolError("invalid argument: sql must not be empty")
    if not sql.lstrip().lower().startswith(("select", "with", "explain")):
        raise ToolError("permission denied: the analytics replica is read-only")
    latency = min(rng.lognormvariate(-2.9, 0.35), 0.9)  # median ~55 ms, most calls 30-80 ms
    if chance(0.02):  # the heavy tail: a cold cache, a lock wait, a full scan
        latency = rng.uniform(1.0, 2.0)
    await work(latency)
    if chance(0.03):
        raise ToolError("backend timeout: query exceeded statement_timeout (5000 ms) on replica db-analytics-2")
    if chance(0.015):
        raise ToolError("connection refused: could not connect to db-analytics-2:5432")
    rows = [
        {"id": rng.randrange(10_000, 99_999), "value": round(rng.uniform(0, 5000), 2)}
        for _ in range(rng.randint(1, 12))
    ]
    return json.dumps({"rowcount": len(rows), "rows": rows, "elapsed_ms": round(latency * 1000, 1)})


@server.tool()
async def fetch_url(url: str) -> str:
    """Fetch a web page through the egress proxy and return its text (simulated)."""
    if not url.startswith(("http://", "https://")):
        raise ToolError("invalid argument: url must start with http:// or https://")
    await work(rng.uniform(0.050, 0.300))
    if chance(0.05):
        raise ToolError("upstream returned 503 Service Unavailable")
    body = f"<html><head><title>{url}</title></head><body>" + "Lorem ipsum dolor sit amet. " * rng.randint(20, 80)
    return body + "</body></html>"


@server.tool(structured_output=False)
async def read_file(path: str) -> str:
    """Read a file from the shared workspace. Returns its content with full metadata."""
    await work(rng.uniform(0.003, 0.020))
    if "missing" in path or chance(0.04):
        raise ToolError(f"file not found: {path}")
    # The bloated-payload case: ~12 KB of metadata, history and padding where ~1 KB would do.
    lines = [f"{i:04d}  def handler_{i}(event, context):  # TODO: refactor" for i in range(150)]
    payload = {
        "path": path,
        "size": 11_873,
        "encoding": "utf-8",
        "owner": "svc-build",
        "history": [{"rev": f"r{1000 + i}", "author": "ci-bot", "message": "chore: reformat"} for i in range(25)],
        "content": "\n".join(lines),
    }
    return json.dumps(payload, indent=2)


@server.tool()
async def send_message(channel: str, text: str) -> str:
    """Post a message to a team chat channel."""
    if not channel.startswith("#"):
        raise ToolError("invalid argument: channel must start with '#'")
    await work(rng.uniform(0.020, 0.080))
    if chance(0.04):
        raise ToolError("chat API rejected the request: invalid API key")
    return json.dumps({"ok": True, "channel": channel, "ts": f"{rng.randrange(10**9, 10**10)}.{rng.randrange(10**6)}"})


@server.resource("docs://page/{slug}", mime_type="text/markdown", description="One documentation page")
async def docs_page(slug: str) -> str:
    await work(rng.uniform(0.002, 0.015))
    title = DOCS.get(slug)
    if title is None:
        raise ResourceNotFoundError(f"documentation page not found: {slug}")
    return f"# {title}\n\n" + "This page explains the feature in detail. " * 30


@server.prompt()
def triage_incident(service: str, severity: str = "sev2") -> str:
    """Draft a triage plan for an incident on a service."""
    return (
        f"You are the on-call engineer. A {severity} incident is open on {service}. "
        "Search the runbook, check recent deployments with query_database, and post a status update."
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m examples.demo_server", description=__doc__.splitlines()[0])
    parser.add_argument("--http", type=int, metavar="PORT", help="serve streamable HTTP on 127.0.0.1:PORT")
    parser.add_argument("--seed", type=int, help="seed the simulated latencies and failures")
    args = parser.parse_args(argv)
    if args.seed is not None:
        rng.seed(args.seed)
    for name in ("mcp", "uvicorn", "uvicorn.access", "uvicorn.error", "httpx", "httpx2"):
        logging.getLogger(name).setLevel(logging.WARNING)
    if args.http:
        server.run("streamable-http", host="127.0.0.1", port=args.http)
    else:
        server.run("stdio")
    return 0


if __name__ == "__main__":
    sys.exit(main())
