"""`mcplens proxy -- CMD`: real stdio peers and clients, byte-identical replies, recorded events, bad traffic.

Every subprocess runs with deadlines (RawStdioClient reads with timeouts, waits are bounded).
"""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import mcp
import pytest
from mcp import StdioServerParameters

from tests.capture.proxy_helpers import env_for, needs_node, npm_peer, proxy_cmd
from tests.conftest import REPO, RawStdioClient, poll, read_events

ID_KEY = "proxy-test-key-0123456789abcdef"
#: differ by construction between two recordings of one call: ids, clocks, which process and
#: which capture path recorded it, and the stdio session (each process pseudonymises its own pipe)
EXCLUDED = {"event.id", "time", "duration_s", "trace_id", "span_id", "parent_span_id", "mcplens.instance.id",
            "process.pid", "mcplens.capture", "mcp.session.id"}


def calls(home: Path, kinds: tuple[str, ...] = ("request", "notification")) -> list[dict[str, Any]]:
    return [e for e in read_events(home) if e.get("event.kind") in kinds]


def wait_for_events(home: Path, n: int, timeout: float = 15.0) -> list[dict[str, Any]]:
    """The proxy writes its last batch as it exits: at least ``n`` events, or what there is by then."""
    return poll(lambda: len(found := calls(home)) >= n and found, timeout) or calls(home)


SCRIPT: list[tuple[str, dict[str, Any] | None]] = [
    ("resources/read", {"uri": "notes://note/early-1"}),  # before the client listed templates: see below
    ("tools/list", None),
    ("resources/templates/list", None),
    ("tools/call", {"name": "add", "arguments": {"a": 2, "b": 3}}),
    ("tools/call", {"name": "boom", "arguments": {"reason": "secret-value"}}),
    ("tools/call", {"name": "crash", "arguments": {}}),
    ("tools/call", {"name": "add", "arguments": {"a": "not-a-number"}}),
    ("tools/call", {"name": "no_such_tool", "arguments": {}}),
    ("resources/read", {"uri": "notes://note/alice-42"}),
    ("resources/read", {"uri": "nope://x"}),
    ("prompts/get", {"name": "greet", "arguments": {"name": "secret-value"}}),
    ("prompts/get", {"name": "greet"}),  # the SDK answers code 0: an exception it does not map
    ("ping", None),
    ("acme/unknown", {}),
]


def run_script(pipe: RawStdioClient) -> list[bytes]:
    replies = [pipe.handshake()]
    replies += [pipe.request(method, params) for method, params in SCRIPT]
    return replies


def test_proxy_records_what_in_process_capture_records_field_by_field(tmp_path: Path) -> None:
    """One run: sdk_server instrumented in-process (home B) and wrapped by the proxy (home A)."""
    proxy_home, inproc_home, bare_home = tmp_path / "proxy", tmp_path / "inproc", tmp_path / "bare"
    env = env_for(inproc_home, MCPLENS_ID_KEY=ID_KEY)  # the child inherits MCPLENS_HOME=B; --home A is the proxy's
    pipe = RawStdioClient(proxy_cmd(proxy_home, sys.executable, "-m", "tests.servers.sdk_server"), env)
    try:
        replies = run_script(pipe)
        assert pipe.close() == 0
    finally:
        pipe.kill()
    # the same script without the proxy, uninstrumented: the client gets the same bytes
    direct = RawStdioClient([sys.executable, "-m", "tests.servers.sdk_server"],
                            env_for(bare_home, MCPLENS_DISABLED="1"))
    try:
        direct_replies = run_script(direct)
        assert direct.close() == 0
    finally:
        direct.kill()
    assert replies == direct_replies
    assert bytes(pipe.raw) == bytes(direct.raw)
    assert not (bare_home / "events").exists()

    proxied = {(e["mcp.method.name"], e.get("jsonrpc.request.id")): e for e in calls(proxy_home)}
    inproc = {(e["mcp.method.name"], e.get("jsonrpc.request.id")): e for e in calls(inproc_home)}
    assert len(proxied) == len(SCRIPT) + 2  # + initialize and notifications/initialized
    assert proxied.keys() == inproc.keys()
    code0 = ("prompts/get", str(len(SCRIPT) - 1))
    for key, p in proxied.items():
        i = inproc[key]
        assert p["mcplens.capture"] == "proxy" and i["mcplens.capture"] == "sdk"
        assert p["mcp.session.id"].startswith("s_") and p["network.transport"] == "pipe"
        left = {k: v for k, v in p.items() if k not in EXCLUDED}
        right = {k: v for k, v in i.items() if k not in EXCLUDED}
        if key == ("resources/read", "2"):
            # in-process knows the server's templates from the start; the proxy learns them from the
            # client's resources/templates/list, so a read before that keeps only the URI's bare shape
            assert i["mcp.resource.uri"] == i["mcplens.target"] == "notes://note/{note_id}"
            assert p["mcp.resource.uri"] == p["mcplens.target"] != i["mcp.resource.uri"]
            for f in ("mcp.resource.uri", "mcplens.target"):
                left.pop(f), right.pop(f)
        if key == code0:
            # on the wire only "code 0" is left of the exception: the proxy cannot name its class
            assert p["mcplens.status"] == i["mcplens.status"] == "exception"
            assert p["rpc.response.status_code"] == i["rpc.response.status_code"] == "0"
            assert p["error.type"] == "0" and i["error.type"] not in ("0", None)
            left.pop("error.type"), right.pop("error.type")
        assert left == right, key
    sizes = {e["jsonrpc.request.id"]: e["mcplens.response.size_bytes"] for e in proxied.values()
             if e["event.kind"] == "request"}
    for line in replies:
        reply = json.loads(line)
        assert sizes[str(reply["id"])] == len(line) - 1  # the reply line as relayed, without its newline
    # argument values go through the same privacy stage either way (compared field by field above)


def _time_server() -> list[str]:
    exe = Path(sys.executable).parent / "mcp-server-time"
    return [str(exe), "--local-timezone", "UTC"]


def _git_server(repo: Path) -> list[str]:
    subprocess.run(["git", "init", "-q", str(repo)], check=True, timeout=30)
    (repo / "README.md").write_text("hello\n")
    for args in (["add", "README.md"], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "first"]):
        subprocess.run(["git", "-C", str(repo), *args], check=True, timeout=30)
    exe = Path(sys.executable).parent / "mcp-server-git"
    return [str(exe), "--repository", str(repo)]


async def _drive(params: StdioServerParameters, tool: str, args: dict[str, Any]) -> tuple[Any, Any]:
    with anyio.fail_after(60):
        async with mcp.Client(params, client_info=mcp_types_impl(), mode="legacy") as c:
            tools = await c.list_tools()
            result = await c.call_tool(tool, args)
            return tools.model_dump(mode="json"), result.model_dump(mode="json")


def mcp_types_impl() -> Any:
    import mcp_types

    return mcp_types.Implementation(name="proxy-test", version="0.1")


@pytest.mark.parametrize("peer", ["time", "git"])
def test_pypi_reference_servers_through_the_proxy(peer: str, tmp_path: Path) -> None:
    """mcp-server-time and mcp-server-git (PyPI) driven by mcp.Client, direct and proxied."""
    if peer == "time":
        command, tool, args = _time_server(), "get_current_time", {"timezone": "UTC"}
    else:
        command, tool, args = _git_server(tmp_path / "repo"), "git_log", {"repo_path": str(tmp_path / "repo")}
    if not Path(command[0]).exists():
        pytest.fail(f"{command[0]} is missing: `pip install -e .[test]` installs it")
    home = tmp_path / "home"
    env = env_for(home)
    direct = anyio.run(_drive, StdioServerParameters(command=command[0], args=command[1:], env=env), tool, args)
    proxied_cmd = proxy_cmd(home, *command)
    proxied = anyio.run(_drive, StdioServerParameters(command=proxied_cmd[0], args=proxied_cmd[1:], env=env,
                                                      cwd=str(REPO)), tool, args)
    assert proxied[0] == direct[0]  # tools/list: identical
    if peer == "git":
        assert proxied[1] == direct[1]
    else:  # the time differs by the seconds between the two runs; the shape does not
        assert not proxied[1].get("isError") and not direct[1].get("isError")
        assert json.loads(proxied[1]["content"][0]["text"]).keys() == json.loads(direct[1]["content"][0]["text"]).keys()
    events = wait_for_events(home, 4)
    by_method = [(e["mcp.method.name"], e.get("gen_ai.tool.name")) for e in events]
    assert ("initialize", None) in by_method and ("tools/list", None) in by_method
    assert (("tools/call", tool)) in by_method
    call = next(e for e in events if e.get("gen_ai.tool.name") == tool)
    assert call["mcplens.status"] == "ok" and call["mcplens.capture"] == "proxy"
    assert call["mcplens.server.name"] == ("mcp-time" if peer == "time" else "mcp-git")
    assert call["mcplens.client.name"] == "proxy-test"
    assert call["mcplens.request.args"] == {k: len(json.dumps(v)) for k, v in args.items()}
    assert call["mcplens.response.size_bytes"] > 40


def _everything() -> list[str]:
    return [str(npm_peer("mcp-server-everything")), "stdio"]


@needs_node
def test_server_everything_raw_bytes_and_server_initiated_traffic(tmp_path: Path) -> None:
    """The npm reference server: byte-identical replies; its sampling request, roots request and
    notifications are recorded with direction server_to_client."""
    home = tmp_path / "home"
    caps = {"sampling": {}, "roots": {"listChanged": True}}
    seen: dict[str, list[bytes]] = {}
    for name, cmd in (("direct", _everything()), ("proxy", proxy_cmd(home, *_everything()))):
        pipe = RawStdioClient(cmd, env_for(tmp_path / f"unused-{name}"))
        try:
            out = [pipe.handshake(capabilities=caps)]
            out.append(pipe.request("tools/list"))
            out.append(pipe.request("tools/call", {"name": "get-sum", "arguments": {"a": 2, "b": 3}}))
            out.append(pipe.request("tools/call", {"name": "echo", "arguments": {"message": "hi"}}))
            out.append(pipe.request("prompts/list"))
            seen[name] = out
            if name == "proxy":
                _answer_sampling(pipe)
            pipe.stop()
        finally:
            pipe.kill()
    assert seen["proxy"] == seen["direct"]
    events = wait_for_events(home, 6)
    sums = [e for e in events if e.get("gen_ai.tool.name") == "get-sum"]
    assert len(sums) == 1 and sums[0]["mcplens.status"] == "ok"
    assert sums[0]["mcplens.server.name"]
    assert sums[0]["mcplens.response.size_bytes"] == len(seen["proxy"][2]) - 1
    server_side = [e for e in events if e.get("mcplens.proxy.direction") == "server_to_client"]
    methods = {e["mcp.method.name"] for e in server_side}
    assert "sampling/createMessage" in methods
    sampling = next(e for e in server_side if e["mcp.method.name"] == "sampling/createMessage")
    assert sampling["event.kind"] == "request" and sampling["mcplens.status"] == "ok"
    assert any(e["event.kind"] == "notification" for e in server_side)


def _answer_sampling(pipe: RawStdioClient) -> None:
    """Call the tool that makes the server ask the client for a completion, and answer it."""
    pipe.send({"jsonrpc": "2.0", "id": 900, "method": "tools/call",
               "params": {"name": "trigger-sampling-request", "arguments": {"prompt": "hi", "maxTokens": 5}}})
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        line = pipe.line(timeout=20)
        assert line, "server closed while the sampling round trip was pending"
        msg = json.loads(line)
        if msg.get("method") == "sampling/createMessage":
            pipe.send({"jsonrpc": "2.0", "id": msg["id"], "result": {
                "role": "assistant", "content": {"type": "text", "text": "ok"}, "model": "test"}})
        elif msg.get("method") == "roots/list":
            pipe.send({"jsonrpc": "2.0", "id": msg["id"], "result": {"roots": []}})
        elif msg.get("id") == 900:
            return
    raise AssertionError("no reply to trigger-sampling-request")


@needs_node
@pytest.mark.parametrize("peer", ["everything", "time"])
def test_inspector_cli_output_is_identical_through_the_proxy(peer: str, tmp_path: Path) -> None:
    """The MCP inspector's headless CLI, direct and through the proxy, prints the same thing."""
    inspector = npm_peer("mcp-inspector")
    home = tmp_path / "home"
    server = _everything() if peer == "everything" else _time_server()
    tool = ["--method", "tools/call", "--tool-name", "get-sum", "--tool-arg", "a=2", "b=3"] if peer == "everything" \
        else ["--method", "tools/call", "--tool-name", "convert_time", "--tool-arg", "source_timezone=UTC",
              "time=12:00", "target_timezone=Europe/Paris"]
    outputs: dict[str, list[str]] = {}
    for name, cmd in (("direct", server), ("proxy", proxy_cmd(home, *server))):
        outputs[name] = []
        for method in (["--method", "tools/list"], tool):
            done = subprocess.run([str(inspector), "--cli", *cmd, *method], cwd=REPO, env=env_for(home),
                                  capture_output=True, timeout=90)
            assert done.returncode == 0, done.stderr.decode()[-2000:]
            outputs[name].append(done.stdout.decode())
    assert outputs["proxy"] == outputs["direct"]
    assert json.loads(outputs["proxy"][0])["tools"]
    events = wait_for_events(home, 4)
    tools = [e["gen_ai.tool.name"] for e in events if e["mcp.method.name"] == "tools/call"]
    assert tools == [tool[3]]
    assert sum(e["mcp.method.name"] == "initialize" for e in events) == 2  # one connection per CLI run
    assert all(e.get("mcplens.client.name") for e in events if e["event.kind"] == "request")


# ---- bad traffic: the raw fixture server misbehaves on request --------------------------------------


def raw_proxy(tmp_path: Path, **env: str) -> tuple[RawStdioClient, Path, Path]:
    home, log = tmp_path / "home", tmp_path / "server-log.json"
    pipe = RawStdioClient(proxy_cmd(home, sys.executable, "-m", "tests.servers.raw_server"),
                   env_for(home, RAW_SERVER_LOG=str(log), **env), stderr=subprocess.PIPE)
    return pipe, home, log


def protocol_errors(home: Path) -> list[dict[str, Any]]:
    return [e for e in read_events(home) if e.get("event.kind") == "mcplens.protocol_error"]


def test_bad_traffic_passes_through_untouched_and_is_counted(tmp_path: Path) -> None:
    pipe, home, log = raw_proxy(tmp_path)
    sent = bytearray()

    def send(data: bytes) -> None:
        sent.extend(data)
        pipe.send(data)

    try:
        send(b'{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-03-26",'
             b'"capabilities":{},"clientInfo":{"name":"bad-client","version":"9"}}}\n')
        assert json.loads(pipe.line())["id"] == 1
        send(b"garbage that is not json\n")
        send(b'{"jsonrpc":"2.0","method":"notifications/x","params":{"v":"\xff\xfe\xfd"}}\n')  # invalid UTF-8
        send(b'{"weird":true}\n')
        big = json.dumps({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                          "params": {"name": "echo", "arguments": {"blob": "y" * (10 * 1024 * 1024)}}}).encode()
        send(big + b"\n")
        reply = pipe.line(timeout=60)
        assert json.loads(reply)["result"]["content"][0]["text"].startswith("echo ")
        send(b'{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"big","arguments":{}}}\n')
        big_reply = pipe.line(timeout=60)
        assert len(big_reply) > 10 * 1024 * 1024
        send(b'{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"garbage","arguments":{}}}\n')
        assert pipe.line() == b"this is not json\n"
        assert b"\xff\xfe" in pipe.line()
        assert json.loads(pipe.line())["id"] == 4
        # a batch (2025-03-26 era): both members recorded
        send(b'[{"jsonrpc":"2.0","id":5,"method":"ping"},{"jsonrpc":"2.0","id":6,"method":"tools/call",'
             b'"params":{"name":"add","arguments":{"a":1}}}]\n')
        batch = json.loads(pipe.line())
        assert [m["id"] for m in batch] == [5, 6]
        # the server asks the client (sampling) and notifies; the client answers
        send(b'{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"ask","arguments":{}}}\n')
        ask = json.loads(pipe.line())
        assert ask["method"] == "sampling/createMessage"
        assert json.loads(pipe.line())["method"] == "notifications/progress"
        assert json.loads(pipe.line())["id"] == 7
        send(b'{"jsonrpc":"2.0","id":"s-1","result":{"role":"assistant","content":{"type":"text","text":"x"},'
             b'"model":"m"}}\n')
        # a call the client gives up on
        send(b'{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"slow","arguments":{}}}\n')
        send(b'{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":8}}\n')
        send(b'{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"fail","arguments":{}}}\n')
        assert json.loads(pipe.line())["error"]["code"] == 0
        # a partial line, then EOF
        send(b'{"jsonrpc":"2.0","id":10,"method":"tools/call","params":{"name":"add"')
        assert pipe.close(timeout=30) == 0
    finally:
        pipe.kill()
    server = json.loads(log.read_text())
    # nothing lost either way: the server received every byte sent, the client every byte written
    assert server["received_sha256"] == hashlib.sha256(sent).hexdigest()
    assert server["sent_sha256"] == hashlib.sha256(bytes(pipe.raw)).hexdigest()
    events = read_events(home)
    errors = {e["mcplens.proxy.error"]: e for e in protocol_errors(home)}
    assert set(errors) == {"invalid_json", "invalid_utf8", "not_jsonrpc", "unterminated_line"}
    # each unreadable line is recorded once, against the side that sent it
    assert sorted((e["mcplens.proxy.error"], e["mcplens.proxy.direction"]) for e in protocol_errors(home)) == [
        ("invalid_json", "client_to_server"), ("invalid_json", "server_to_client"),
        ("invalid_utf8", "client_to_server"), ("invalid_utf8", "server_to_client"),
        ("not_jsonrpc", "client_to_server"), ("unterminated_line", "client_to_server"),
    ]
    assert sorted(e["mcplens.proxy.protocol_errors"] for e in protocol_errors(home)) == list(
        range(1, len(protocol_errors(home)) + 1))
    assert len(protocol_errors(home)) == 6  # 3 client lines, 2 server lines (garbage, bad UTF-8), the partial line
    req = {e.get("jsonrpc.request.id"): e for e in events if e.get("event.kind") == "request"}
    assert req["2"]["mcplens.request.args"] == {"blob": 10 * 1024 * 1024 + 2}
    assert req["3"]["mcplens.response.size_bytes"] == len(big_reply) - 1
    assert req["5"]["mcp.method.name"] == "ping" and req["6"]["gen_ai.tool.name"] == "add"
    assert req["s-1"]["mcp.method.name"] == "sampling/createMessage"
    assert req["s-1"]["mcplens.proxy.direction"] == "server_to_client"
    assert req["8"]["mcplens.status"] == "cancelled"
    assert req["9"]["mcplens.status"] == "exception" and req["9"]["rpc.response.status_code"] == "0"
    assert all(e["mcplens.client.name"] == "bad-client" for e in req.values() if "mcplens.proxy.direction" not in e)
    notes = [e for e in events if e.get("event.kind") == "notification"]
    assert any(e["mcp.method.name"] == "notifications/progress" and
               e["mcplens.proxy.direction"] == "server_to_client" for e in notes)
    assert any(e["mcp.method.name"] == "notifications/cancelled" for e in notes) is False  # folded into #8


def test_server_crash_mid_call_ends_the_proxy_with_its_exit_code(tmp_path: Path) -> None:
    pipe, home, _log = raw_proxy(tmp_path)
    try:
        pipe.handshake()
        pipe.send({"jsonrpc": "2.0", "id": 50, "method": "tools/call", "params": {"name": "crash", "arguments": {}}})
        assert pipe.line(timeout=20) == b""  # EOF: no reply, and no hang
        assert pipe.proc.wait(timeout=20) == 3
    finally:
        pipe.kill()
    crashed = [e for e in read_events(home) if e.get("jsonrpc.request.id") == "50"]
    assert len(crashed) == 1
    assert crashed[0]["mcplens.status"] == "exception" and crashed[0]["error.type"] == "ServerExited"
    assert crashed[0]["mcplens.error.category"] == "connection_failure"


def test_partial_reply_at_eof_is_relayed_and_recorded(tmp_path: Path) -> None:
    pipe, home, _log = raw_proxy(tmp_path)
    try:
        pipe.handshake()
        pipe.send({"jsonrpc": "2.0", "id": 60, "method": "partial"})
        tail = pipe.line(timeout=20)
        assert tail == b'{"jsonrpc":"2.0","id":60,"result":{}}'  # exactly as the server wrote it, no newline
        assert pipe.line(timeout=20) == b""
        assert pipe.proc.wait(timeout=20) == 0
    finally:
        pipe.kill()
    # recorded once: the call, marked as having ended on an unterminated line (it used to be
    # recorded a second time, as a protocol error)
    assert protocol_errors(home) == []
    partial = [e for e in read_events(home) if e.get("jsonrpc.request.id") == "60"]
    assert len(partial) == 1 and partial[0]["mcplens.status"] == "ok"
    assert partial[0]["mcplens.proxy.error"] == "unterminated_line"
    assert sorted(e["mcp.method.name"] for e in read_events(home)) == [
        "initialize", "notifications/initialized", "partial"]  # nothing else


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_signals_reach_the_server_and_stderr_passes_through(sig: int, tmp_path: Path) -> None:
    pipe, home, log = raw_proxy(tmp_path)
    try:
        pipe.handshake()
        pipe.request("tools/call", {"name": "add", "arguments": {"a": 1}})
        pipe.proc.send_signal(sig)
        code = pipe.proc.wait(timeout=20)
        assert code == 40 + sig  # the server's own handler chose this exit code; the proxy passed it on
        assert pipe.proc.stderr is not None
        assert b"raw-fixture ready\n" in pipe.proc.stderr.read()
    finally:
        pipe.kill()
    assert json.loads(log.read_text())["received"] > 0
    assert [e["gen_ai.tool.name"] for e in read_events(home) if e.get("mcp.method.name") == "tools/call"] == ["add"]


def test_client_disconnect_ends_server_and_proxy(tmp_path: Path) -> None:
    pipe, home, _log = raw_proxy(tmp_path)
    try:
        pipe.handshake()
        pipe.send({"jsonrpc": "2.0", "id": 70, "method": "tools/call", "params": {"name": "big", "arguments": {}}})
        pipe.send({"jsonrpc": "2.0", "id": 71, "method": "tools/call", "params": {"name": "big", "arguments": {}}})
        assert pipe.proc.stdout is not None and pipe.proc.stdin is not None
        pipe.proc.stdin.close()
        pipe.proc.stdout.close()  # the client goes away mid-stream, with 20 MB still coming
        assert pipe.proc.wait(timeout=30) == 0
    finally:
        pipe.kill()
    assert {e.get("jsonrpc.request.id") for e in read_events(home)} >= {"70", "71"}


def test_a_missing_command_is_a_clear_error(tmp_path: Path) -> None:
    done = subprocess.run(proxy_cmd(tmp_path, "no-such-command-xyz"), cwd=REPO, env=env_for(tmp_path),
                          capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
    assert done.returncode == 127 and done.stdout == b""
    assert b"cannot start 'no-such-command-xyz'" in done.stderr
    usage = subprocess.run([sys.executable, "-m", "mcplens.cli", "proxy"], cwd=REPO, env=env_for(tmp_path),
                           capture_output=True, timeout=30)
    assert usage.returncode == 2 and b"usage" in usage.stderr


def test_disabled_proxy_relays_and_records_nothing(tmp_path: Path) -> None:
    pipe, home, _log = raw_proxy(tmp_path, MCPLENS_DISABLED="1")
    try:
        assert json.loads(pipe.handshake())["result"]["serverInfo"]["name"] == "raw-fixture"
        assert pipe.close() == 0
    finally:
        pipe.kill()
    assert not (home / "events").exists()


def test_proxy_feeds_the_exporters_named_in_the_environment(tmp_path: Path) -> None:
    """MCPLENS_EXPORTERS reaches the proxy as it reaches instrument(): here the JSON log exporter."""
    log = tmp_path / "events.log"
    env = env_for(tmp_path / "server", MCPLENS_EXPORTERS="log", MCPLENS_LOG_FILE=str(log))
    pipe = RawStdioClient(proxy_cmd(tmp_path / "proxy", sys.executable, "-m", "tests.servers.sdk_server"), env)
    try:
        run_script(pipe)
        assert pipe.close() == 0
    finally:
        pipe.kill()
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    methods = {e.get("mcp.method.name") for e in lines}
    assert "initialize" in methods and "tools/call" in methods
    # the wrapped server (instrumented too, same environment) logs its own; the proxy's are there
    assert {"proxy", "sdk"} <= {e.get("mcplens.capture") for e in lines}


#: a server that answers each request with a canned line chosen by the tool name (inline: the
#: test controls the exact bytes, including member order, which differs between SDKs)
HUGE_SERVER = r"""
import json, sys
pad = "z" * (3 * 1024 * 1024)
for line in sys.stdin.buffer:
    msg = json.loads(line)
    rid, name = msg["id"], msg["params"]["name"]
    content = {"content": [{"type": "text", "text": pad}]}
    if name == "py":  # Python SDK order: jsonrpc, id, result
        out = {"jsonrpc": "2.0", "id": rid, "result": {**content, "isError": False}}
    elif name == "ts":  # TypeScript SDK order: result first, id last
        out = {"result": content, "jsonrpc": "2.0", "id": rid}
    elif name == "failed":
        out = {"jsonrpc": "2.0", "id": rid, "result": {**content, "isError": True}}
    elif name == "note":  # a huge notification first, then a small reply
        sys.stdout.buffer.write(json.dumps({"jsonrpc": "2.0", "method": "notifications/message",
                                            "params": {"level": "info", "data": pad}}).encode() + b"\n")
        out = {"jsonrpc": "2.0", "id": rid, "result": {"content": []}}
    else:
        out = {"jsonrpc": "2.0", "id": rid, "result": {"content": [{"type": "text", "text": "small"}]}}
    sys.stdout.buffer.write(json.dumps(out).encode() + b"\n")
    sys.stdout.buffer.flush()
"""


def test_huge_server_messages_are_relayed_whole_and_read_from_their_envelope(tmp_path: Path) -> None:
    """Replies over 1 MiB are not joined or parsed on their way (the relay would stall every
    message behind them): the writer reads id, outcome and exact size from their edges."""
    home = tmp_path / "home"
    pipe = RawStdioClient(proxy_cmd(home, sys.executable, "-c", HUGE_SERVER), env_for(home))
    sizes: dict[str, int] = {}
    try:
        for rid, name in enumerate(["py", "small", "ts", "failed", "note", "small"], start=1):
            pipe.send({"jsonrpc": "2.0", "id": rid, "method": "tools/call", "params": {"name": name, "arguments": {}}})
            while True:
                line = pipe.line(timeout=60)
                obj = json.loads(line)  # relayed whole: every line still parses
                if obj.get("id") == rid:
                    sizes[str(rid)] = len(line) - 1
                    break
        assert pipe.close(timeout=30) == 0
    finally:
        pipe.kill()
    req = {e["jsonrpc.request.id"]: e for e in calls(home, ("request",))}
    assert {k: e["mcplens.status"] for k, e in req.items()} == {
        "1": "ok", "2": "ok", "3": "ok", "4": "tool_error", "5": "ok", "6": "ok"}
    assert {k: e["mcplens.response.size_bytes"] for k, e in req.items()} == sizes
    assert sizes["1"] > 3 * 1024 * 1024 and sizes["3"] > 3 * 1024 * 1024
    notes = [e for e in calls(home, ("notification",)) if e["mcp.method.name"] == "notifications/message"]
    assert len(notes) == 1 and notes[0]["mcplens.proxy.direction"] == "server_to_client"
    assert not protocol_errors(home)
