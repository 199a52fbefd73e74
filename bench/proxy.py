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

``--http`` measures the streamable-HTTP proxy instead (see ``bench/proxy_http.py``): added latency,
throughput at 50 concurrent sessions, and 300 sessions each holding a GET stream open.
``--big`` measures small calls queued behind one 20 MB reply through the stdio proxy.
``--baseline-src DIR`` adds a contender running the proxy from another source tree (e.g. the
commit before a change, extracted with ``git archive``), for before/after in one run.
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
from typing import Any

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


def _write(section: list[str], text: str) -> None:
    stamp = datetime.datetime.now(datetime.UTC).strftime("%a %b %d %H:%M:%S UTC %Y")
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "?")
    except OSError:
        cpu = "?"
    try:
        load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        load = "?"
    head = [
        f"### {section[0]} {stamp} (`{' '.join(['bench/proxy.py', section[1]]).strip()}`)",
        "",
        f"- Machine: `{platform.system()} {platform.release()} {platform.machine()}`, nproc {os.cpu_count()}, "
        f"{cpu}; {platform.python_implementation()} {platform.python_version()}; load average at the end {load} "
        "(other jobs on the machine inflate absolute figures: compare contenders within this run)",
        *section[2:],
        "",
    ]
    RESULTS.write_text(RESULTS.read_text() + "\n" + "\n".join(head) + text + "\n")
    print(f"written to {RESULTS}")


def http_main(args: argparse.Namespace) -> int:
    import proxy_http as ph

    ph.raise_files()
    names = ["direct", "relay only", "proxy"]
    src = {}
    if args.baseline_src:
        names.append("proxy (baseline)")
        src["proxy (baseline)"] = str(Path(args.baseline_src) / "src")
    rng = random.Random(1)
    with tempfile.TemporaryDirectory() as tmp:
        stack = ph.Stack(Path(tmp), names, src, upstream_kind=args.upstream_kind)
        try:
            lat: dict[str, list[int]] = {n: [] for n in names}
            for r in range(args.rounds + 1):
                order = names[:]
                rng.shuffle(order)
                for name in order:
                    samples = ph.run_latency(stack.urls[name], args.block)
                    if r >= 1:
                        lat[name].extend(samples)
            tp: dict[str, list[float]] = {n: [] for n in names}
            # CPU per call of each hop during the throughput runs: the proxy's own and the upstream
            # server's, so "what the relay costs" is a ratio measured in the same run (not subject to
            # how the shared machine's CPUs were divided between the processes)
            cpu: dict[str, list[tuple[float, float]]] = {n: [] for n in names}
            for _ in range(args.tp_rounds):
                order = names[:]
                rng.shuffle(order)
                for name in order:
                    pid = stack.pids.get(name)
                    up0, px0 = ph.cpu_seconds(stack.pids["upstream"]), ph.cpu_seconds(pid) if pid else 0.0
                    rate = ph.run_throughput(stack.urls[name], args.concurrency, args.tp_seconds, args.clients)
                    calls = rate * args.tp_seconds  # the timed calls; the CPU also covers opening the sessions
                    tp[name].append(rate)
                    if calls:
                        cpu[name].append(((ph.cpu_seconds(stack.pids["upstream"]) - up0) / calls * 1e6,
                                          ((ph.cpu_seconds(pid) - px0) / calls * 1e6) if pid else 0.0))
            many = _sessions_phase(ph, stack, names, args, rng)
        finally:
            stack.close()
        if args.sessions and ph.EVERYTHING.exists() and not args.no_everything:
            (Path(tmp) / "everything").mkdir()
            stack = ph.Stack(Path(tmp) / "everything", names, src, upstream_kind="everything")
            try:
                many.update(_sessions_phase(ph, stack, names, args, rng))
            finally:
                stack.close()
    lines = [
        f"| path | p50 ms | p99 ms | added p50 ms | throughput calls/s ({args.concurrency} sessions) | "
        "vs direct (IQR) | proxy CPU per call µs (÷ upstream's) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    base = ph.stats(lat["direct"])

    def paired(name: str) -> tuple[float, float, float]:
        ratios = sorted((a / b - 1) * 100 for a, b in zip(tp[name], tp["direct"], strict=True))
        q = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
        return statistics.median(ratios), q[0], q[2]

    for name in names:
        s = ph.stats(lat[name])
        added = "—" if name == "direct" else f"{(s['p50'] - base['p50']) / 1e6:.2f}"
        ratio = "—" if name == "direct" else "{:+.1f}% ({:+.1f}…{:+.1f})".format(*paired(name))
        if name == "direct" or not cpu[name]:
            hop = "—" if name == "direct" else "?"
        else:
            own = statistics.median(p for _, p in cpu[name])
            hop = f"{own:,.0f} ({statistics.median(p / u for u, p in cpu[name] if u):.2f})"
        lines.append(f"| {name} | {s['p50'] / 1e6:.2f} | {s['p99'] / 1e6:.2f} | {added} | "
                     f"{statistics.median(tp[name]):,.0f} | {ratio} | {hop} |")
    added_p50 = (ph.stats(lat["proxy"])["p50"] - base["p50"]) / 1e6
    verdict = [
        f"- Goal added p50 ≤ 1 ms: **{'met' if added_p50 <= 1.0 else 'missed'}** ({added_p50:.2f} ms)",
        f"- Goal throughput within 10% of direct at {args.concurrency} sessions: "
        f"**{'met' if paired('proxy')[0] >= -10 else 'missed'}** ({paired('proxy')[0]:+.1f}%, "
        "median of per-round pairs)",
    ]
    if many:
        sess_lines, sess_verdict = _sessions_table(ph, many, names, args)
        lines += ["", *sess_lines]
        verdict += sess_verdict
    text = "\n".join(lines + [""] + verdict)
    print(text)
    if args.write_results:
        upstream = ("`MCPServer` (mcp 2.x, streamable HTTP, stateful)" if args.upstream_kind == "python" else
                    "a standard-library asyncio server answering as the SDK does (SSE, chunked)")
        _write(["HTTP proxy run", " ".join(sys.argv[1:]),
                f"- Settings: upstream {upstream} for latency and throughput; "
                f"latency {args.rounds} rounds × {args.block} calls, one in flight; throughput {args.tp_rounds} "
                f"rounds × {args.tp_seconds:g} s with {args.concurrency} sessions calling back to back from "
                f"{args.clients} client process(es); "
                f"{args.session_rounds} round(s) of {args.sessions} sessions holding GET streams, one call "
                f"each, spread over {args.spread:g} s or all at once; contenders in a "
                "shuffled order every round (seed 1); client `httpx2` speaking MCP HTTP directly" + (
                    f"; baseline: the proxy from `{args.baseline_src}`" if args.baseline_src else "")], text)
    return 0


def _sessions_phase(ph: Any, stack: Any, names: list[str], args: argparse.Namespace,
                    rng: random.Random) -> dict[tuple[str, str], dict[str, Any]]:
    """Per (upstream, arrival): per contender the call latencies (or the error that failed it)."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    if not args.sessions:
        return out
    modes = [("spread", args.spread), ("burst", 0.0)]
    for mode, _ in modes:
        out[(stack.kind, mode)] = {n: [] for n in names}
    for _ in range(args.session_rounds):
        for mode, spread in modes:
            order = names[:]
            rng.shuffle(order)
            for name in order:
                got = out[(stack.kind, mode)]
                if isinstance(got[name], str):
                    continue
                _upstream_idle(ph, stack)
                try:
                    got[name].extend(ph.run_sessions(stack.urls[name], args.sessions, spread, ph.CALLS[stack.kind]))
                except BaseException as exc:  # noqa: BLE001 - a contender that fails here: reported
                    got[name] = repr(exc)[:160]
    return out


def _upstream_idle(ph: Any, stack: Any, deadline: float = 60.0) -> None:
    """Wait until the upstream has finished with the previous contender's 300 sessions (their
    DELETEs and closed GET streams keep a Python MCPServer busy for seconds after the last call):
    otherwise whichever contender runs next is measured against that backlog. Idle = under 2% of a
    CPU over half a second, polled with a deadline."""
    pid = stack.pids["upstream"]
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        c0 = ph.cpu_seconds(pid)
        time.sleep(0.5)  # the measuring window of the CPU rate, not synchronisation
        if ph.cpu_seconds(pid) - c0 < 0.01:
            return


UPSTREAM_NAMES = {"python": "Python MCPServer", "fast": "stdlib asyncio upstream (--upstream-kind fast)"}


def _sessions_table(ph: Any, many: dict[tuple[str, str], dict[str, Any]], names: list[str],
                    args: argparse.Namespace) -> tuple[list[str], list[str]]:
    lines = [f"{args.sessions} sessions each holding a GET stream, then one call each (only the calls timed):", "",
             "| upstream | calls arrive | path | answered | call p50 ms | p99 ms | added p50 / p99 ms |",
             "|---|---|---|---:|---:|---:|---:|"]
    verdict = []
    for (kind, mode), per in many.items():
        upstream = UPSTREAM_NAMES.get(kind, "npm server-everything")
        arrival = f"spread over {args.spread:g} s" if mode == "spread" else "all at once"
        direct = ph.stats(per["direct"]) if isinstance(per["direct"], list) and per["direct"] else None
        for name in names:
            got = per[name]
            if isinstance(got, str):
                lines.append(f"| {upstream} | {arrival} | {name} | failed: `{got}` | | | |")
                continue
            m = ph.stats(got)
            added = "—" if name == "direct" or direct is None else (
                f"{(m['p50'] - direct['p50']) / 1e6:+.1f} / {(m['p99'] - direct['p99']) / 1e6:+.1f}")
            lines.append(f"| {upstream} | {arrival} | {name} | {m['n']} of {args.sessions * args.session_rounds} | "
                         f"{m['p50'] / 1e6:.1f} | {m['p99'] / 1e6:.1f} | {added} |")
        proxy = per.get("proxy")
        if isinstance(proxy, list) and proxy and direct is not None:
            p = ph.stats(proxy)
            answered = len(proxy) == args.sessions * args.session_rounds
            verdict.append(
                f"- {upstream}, calls {arrival}: proxy p99 {p['p99'] / 1e6:.0f} ms vs direct "
                f"{direct['p99'] / 1e6:.0f} ms "
                f"(the upstream's own), all answered: {'yes' if answered else 'NO'}; goal p99 < 1 s: "
                f"**{'met' if answered and p['p99'] < 1e9 else 'missed'}**")
    return lines, verdict


def big_main(args: argparse.Namespace) -> int:
    """Small calls sent right after one 20 MB reply's request: how long each waits, per path."""
    names = ["direct", "relay only", "proxy"]
    if args.baseline_src:
        names.append("proxy (baseline)")
    rng = random.Random(1)
    waits: dict[str, list[float]] = {n: [] for n in names}
    bigs: dict[str, list[float]] = {n: [] for n in names}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.big_rounds):
            order = names[:]
            rng.shuffle(order)
            for name in order:
                big, small = _big_once(name, Path(tmp) / name.replace(" ", "-").strip("()"), args.baseline_src)
                bigs[name].append(big)
                waits[name].extend(small)
    lines = ["| path | 20 MB reply ms (median) | small calls behind it: p50 ms | p99 ms |", "|---|---:|---:|---:|"]
    for name in names:
        s = sorted(waits[name])
        lines.append(f"| {name} | {statistics.median(bigs[name]):.0f} | {s[len(s) // 2]:.1f} | "
                     f"{s[min(len(s) - 1, int(0.99 * len(s)))]:.1f} |")
    text = "\n".join(lines)
    print(text)
    if args.write_results:
        _write(["stdio proxy, small calls behind a 20 MB reply", "--big",
                f"- Settings: a standard-library line server; the client sends one call answered with 20 MB, then 20 "
                f"small calls 5 ms apart, and reads replies with a buffered reader; {args.big_rounds} interleaved "
                "rounds per path" + (f"; baseline: the proxy from `{args.baseline_src}`" if args.baseline_src else "")],
               text)
    return 0


BIG_SERVER = r"""
import sys
out = sys.stdout.buffer
big = b'{"jsonrpc":"2.0","id":%s,"result":{"content":[{"type":"text","text":"' + b"x" * (20 * 1024 * 1024) + b'"}]}}\n'
for line in sys.stdin.buffer:
    i = line.find(b'"id":')
    rid = line[i + 5:line.find(b",", i)]
    if b'"big"' in line:
        out.write(big.replace(b"%s", rid, 1))
    else:
        out.write(b'{"jsonrpc":"2.0","id":' + rid + b',"result":{"content":[{"type":"text","text":"5"}]}}\n')
    out.flush()
"""


def _big_once(name: str, home: Path, baseline: str | None) -> tuple[float, list[float]]:
    server = [sys.executable, "-c", BIG_SERVER]
    env = dict(os.environ, MCPLENS_HOME=str(home))
    src = str(Path(baseline) / "src") if name == "proxy (baseline)" and baseline else str(REPO / "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    cmd = server if name == "direct" else [sys.executable, "-m", "mcplens.cli", "proxy", "--", *server]
    if name == "relay only":
        env["MCPLENS_DISABLED"] = "1"
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
    assert proc.stdin is not None and proc.stdout is not None

    def req(i: int, tool: str) -> bytes:
        return b'{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"%s","arguments":{}}}\n' % (
            i, tool.encode())

    proc.stdin.write(req(0, "small"))
    proc.stdin.flush()
    proc.stdout.readline()
    sent: dict[int, float] = {}
    got: dict[int, float] = {}

    def reader() -> None:
        for _ in range(21):
            line = proc.stdout.readline()  # type: ignore[union-attr]
            i = line.find(b'"id":')
            got[int(line[i + 5:line.find(b",", i)])] = time.perf_counter()

    th = threading.Thread(target=reader)
    th.start()
    sent[1] = time.perf_counter()
    proc.stdin.write(req(1, "big"))
    proc.stdin.flush()
    for i in range(2, 22):
        time.sleep(0.005)  # pacing the client's sends, not synchronisation
        sent[i] = time.perf_counter()
        proc.stdin.write(req(i, "small"))
        proc.stdin.flush()
    th.join(timeout=120)
    proc.stdin.close()
    proc.wait(timeout=30)
    return (got[1] - sent[1]) * 1000, [(got[i] - sent[i]) * 1000 for i in range(2, 22)]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=40, help="interleaved latency rounds (default 40)")
    p.add_argument("--block", type=int, default=250, help="round trips per contender per round (default 250)")
    p.add_argument("--tp-rounds", type=int, default=15, help="interleaved throughput rounds (default 15)")
    p.add_argument("--tp-messages", type=int, default=5000, help="pipelined requests per throughput run (5000)")
    p.add_argument("--write-results", action="store_true", help="append a section to bench/RESULTS.md")
    p.add_argument("--http", action="store_true", help="measure the streamable-HTTP proxy instead")
    p.add_argument("--concurrency", type=int, default=50, help="--http: sessions calling at once (default 50)")
    p.add_argument("--clients", type=int, default=2,
                   help="--http: client processes sharing the throughput run's sessions (default 2)")
    p.add_argument("--tp-seconds", type=float, default=3.0, help="--http: seconds per throughput run (default 3)")
    p.add_argument("--sessions", type=int, default=300, help="--http: sessions with open GET streams (default 300)")
    p.add_argument("--session-rounds", type=int, default=1, help="--http: rounds of the many-sessions run (1)")
    p.add_argument("--spread", type=float, default=3.0,
                   help="--http: seconds the many sessions' calls are spread over (default 3)")
    p.add_argument("--upstream-kind", choices=["python", "fast"], default="python",
                   help="--http: the upstream for latency and throughput: a Python MCPServer (default) or a "
                        "standard-library server answering alike at a fraction of its CPU")
    p.add_argument("--no-everything", action="store_true",
                   help="--http: skip the many-sessions run against npm server-everything")
    p.add_argument("--big", action="store_true", help="stdio: small calls queued behind one 20 MB reply")
    p.add_argument("--big-rounds", type=int, default=5, help="--big: interleaved rounds (default 5)")
    p.add_argument("--baseline-src", help="a source tree whose proxy runs as one more contender (before/after)")
    args = p.parse_args()
    if args.http:
        return http_main(args)
    if args.big:
        return big_main(args)
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
        _write(["Proxy run", "", f"- Settings: stdio, one request in flight; {args.rounds} rounds × {args.block} "
                f"round trips per contender, order shuffled every round (seed 1), 2 warm-up rounds discarded; "
                f"throughput: {args.tp_messages:,} pipelined requests × {args.tp_rounds} interleaved rounds (median; "
                "vs direct = median of per-round ratios); "
                "server: a standard-library line server answering each `tools/call` at once"], text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
