#!/usr/bin/env python
"""What ``mcplens proxy -- CMD`` adds to a stdio MCP server: latency per round trip and throughput.

Three ways to reach the same tiny stdio JSON-RPC server (standard library, answers each
``tools/call`` line with a ~130-byte result at once, so the server itself costs little):

- **direct**: the client's pipes go straight to the server;
- **relay only**: through ``mcplens proxy`` with ``MCPLENS_DISABLED=1`` (copying bytes, no capture);
- **proxy**: through ``mcplens proxy`` recording every call (the default).

Latency: one request in flight; a block of round trips per contender, contenders interleaved in a
fresh random order every round, so drift hits all alike; the figure is the pooled p50/p99 and the
added time is proxy − direct. Throughput: a writer thread pipelines N requests while the reader
takes the replies; messages per second, interleaved the same way, median of the rounds. The
writer-thread cost per message (parse + pair + build, off the relay path) is timed separately.

Run ``python bench/proxy.py``; ``--write-results`` appends a section to ``bench/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "RESULTS.md"

SERVER = r"""
import sys
out = sys.stdout.buffer
for line in sys.stdin.buffer:
    i = line.find(b'"id":')
    rid = line[i + 5:line.find(b",", i)] if i >= 0 else b"null"
    out.write(b'{"jsonrpc":"2.0","id":' + rid + b',"result":{"content":[{"type":"text","text":"5"}],'
              b'"structuredContent":{"result":5},"isError":false}}\n')
    out.flush()
"""


def request(i: int) -> bytes:
    return (b'{"jsonrpc":"2.0","id":' + str(i).encode() +
            b',"method":"tools/call","params":{"name":"add","arguments":{"a":2,"b":3}}}\n')


class Peer:
    """One contender: a server process behind raw pipes (optionally via the proxy)."""

    def __init__(self, name: str, home: Path) -> None:
        server = [sys.executable, "-c", SERVER]
        env = dict(os.environ, MCPLENS_HOME=str(home))
        env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
        if name == "direct":
            cmd = server
        else:
            cmd = [sys.executable, "-m", "mcplens.cli", "proxy", "--", *server]
            if name == "relay only":
                env["MCPLENS_DISABLED"] = "1"
        self.name = name
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, bufsize=0)
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.w, self.r = self.proc.stdin.fileno(), self.proc.stdout
        self.next = 0
        self.roundtrip()  # warm the path (and the proxy's imports) before anything is timed

    def roundtrip(self) -> int:
        self.next += 1
        data = request(self.next)
        t0 = time.perf_counter_ns()
        os.write(self.w, data)
        line = self.r.readline()
        t1 = time.perf_counter_ns()
        assert line, f"{self.name}: server closed"
        return t1 - t0

    def throughput(self, n: int) -> float:
        payload = b"".join(request(self.next + k + 1) for k in range(n))
        self.next += n

        def write() -> None:
            view = memoryview(payload)
            while view:
                view = view[os.write(self.w, view[:65536]):]

        t0 = time.perf_counter()
        writer = threading.Thread(target=write)
        writer.start()
        for _ in range(n):
            assert self.r.readline()
        elapsed = time.perf_counter() - t0
        writer.join()
        return n / elapsed

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def pct(values: list[int], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000.0


def writer_cost(n: int) -> float:
    """µs per message on the writer thread: the proxy's builder over request/reply lines."""
    sys.path.insert(0, str(REPO / "src"))
    from mcplens.capture.jsonrpc import CLIENT_TO_SERVER, SERVER_TO_CLIENT
    from mcplens.capture.proxy_stdio import LINE, StdioCapture
    from mcplens.config import Settings
    from mcplens.pipeline import Pipeline

    with tempfile.TemporaryDirectory() as tmp:
        pipeline = Pipeline(Settings(home=Path(tmp), flush_interval=60, handle_sigterm=False))
        build = StdioCapture(pipeline, pipeline.settings)
        reply = (b'{"jsonrpc":"2.0","id":%d,"result":{"content":[{"type":"text","text":"5"}],'
                 b'"structuredContent":{"result":5},"isError":false}}')
        items = []
        for i in range(n):
            req = request(i)[:-1]
            items.append((CLIENT_TO_SERVER, req, 0.0, LINE, len(req)))
            rep = reply % i
            items.append((SERVER_TO_CLIENT, rep, 0.0, LINE, len(rep)))
        t0 = time.perf_counter()
        for item in items:
            build(item)
        elapsed = time.perf_counter() - t0
        pipeline.close()
    return elapsed / len(items) * 1e6


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=40, help="interleaved latency rounds (default 40)")
    p.add_argument("--block", type=int, default=250, help="round trips per contender per round (default 250)")
    p.add_argument("--tp-rounds", type=int, default=15, help="interleaved throughput rounds (default 15)")
    p.add_argument("--tp-messages", type=int, default=5000, help="pipelined requests per throughput run (5000)")
    p.add_argument("--write-results", action="store_true", help="append a section to bench/RESULTS.md")
    args = p.parse_args()
    names = ["direct", "relay only", "proxy"]
    rng = random.Random(1)
    with tempfile.TemporaryDirectory() as tmp:
        peers = {name: Peer(name, Path(tmp) / name.replace(" ", "-")) for name in names}
        lat: dict[str, list[int]] = {n: [] for n in names}
        for r in range(args.rounds + 2):
            order = names[:]
            rng.shuffle(order)
            for name in order:
                samples = [peers[name].roundtrip() for _ in range(args.block)]
                if r >= 2:  # two warm-up rounds discarded
                    lat[name].extend(samples)
        tp: dict[str, list[float]] = {n: [] for n in names}
        for _ in range(args.tp_rounds):
            order = names[:]
            rng.shuffle(order)
            for name in order:
                tp[name].append(peers[name].throughput(args.tp_messages))
        for peer in peers.values():
            peer.close()
        recorded, dropped = 0, 0
        for f in (Path(tmp) / "proxy").rglob("*.jsonl"):
            with f.open() as lines:
                for line in lines:
                    if '"tools/call"' in line:
                        recorded += 1
                    elif '"mcplens.health"' in line:
                        dropped = max(dropped, json.loads(line).get("mcplens.health.dropped", 0))
        sent = peers["proxy"].next
    per_msg = writer_cost(20000)
    rows = []
    for name in names:
        rows.append((name, pct(lat[name], 0.5), pct(lat[name], 0.99), statistics.median(tp[name])))
    direct = rows[0]
    lines = [
        "| path | p50 µs | p99 µs | added p50 µs | added p99 µs | throughput msg/s | vs direct (IQR) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    def paired(name: str) -> tuple[float, float, float]:
        """Median and IQR of (contender / direct − 1) over rounds: each round's pair ran back to back."""
        ratios = sorted((a / b - 1) * 100 for a, b in zip(tp[name], tp["direct"], strict=True))
        q = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
        return statistics.median(ratios), q[0], q[2]

    for name, p50, p99, thr in rows:
        added = "—" if name == "direct" else f"{p50 - direct[1]:.1f}"
        added99 = "—" if name == "direct" else f"{p99 - direct[2]:.1f}"
        ratio = "—" if name == "direct" else "{:+.1f}% ({:+.1f}…{:+.1f})".format(*paired(name))
        lines.append(f"| {name} | {p50:.1f} | {p99:.1f} | {added} | {added99} | {thr:,.0f} | {ratio} |")
    proxy = rows[2]
    verdict = [
        f"- Goal p50 added < 100 µs: **{'met' if proxy[1] - direct[1] < 100 else 'missed'}** "
        f"({proxy[1] - direct[1]:.1f} µs)",
        f"- Goal throughput within 10% of direct: **{'met' if paired('proxy')[0] >= -10 else 'missed'}** "
        f"({paired('proxy')[0]:+.1f}%, median of per-round pairs; IQR in the table)",
        f"- Writer thread (off the relay path): {per_msg:.1f} µs per message (parse, pair, build)",
        f"- Events recorded by the proxy: {recorded:,} of {sent:,} tools/call sent; {dropped:,} queue items "
        f"dropped (queue full while pipelining, counted in the health record)",
    ]
    text = "\n".join(lines + [""] + verdict)
    print(text)
    if args.write_results:
        stamp = datetime.datetime.now(datetime.UTC).strftime("%a %b %d %H:%M:%S UTC %Y")
        try:
            with open("/proc/cpuinfo") as f:
                cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "?")
        except OSError:
            cpu = "?"
        head = [
            f"### Proxy run {stamp} (`bench/proxy.py`)",
            "",
            f"- Machine: `{platform.system()} {platform.release()} {platform.machine()}`, nproc {os.cpu_count()}, "
            f"{cpu}; {platform.python_implementation()} {platform.python_version()}",
            f"- Settings: stdio, one request in flight; {args.rounds} rounds × {args.block} round trips per "
            f"contender, order shuffled every round (seed 1), 2 warm-up rounds discarded; throughput: "
            f"{args.tp_messages:,} pipelined requests × {args.tp_rounds} interleaved rounds (median; vs direct = "
            "median of per-round ratios); "
            "server: a standard-library line server answering each `tools/call` at once",
            "",
        ]
        RESULTS.write_text(RESULTS.read_text() + "\n" + "\n".join(head) + text + "\n")
        print(f"written to {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
