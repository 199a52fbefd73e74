"""The proxies' pairing logic on its own: ids, errors, cancellation, server requests, bounds."""

from __future__ import annotations

from mcplens import event as ev
from mcplens.capture import jsonrpc
from mcplens.capture.jsonrpc import Conversation, Pairer, parse


def pairer() -> tuple[Pairer, Conversation]:
    return Pairer(transport="pipe"), Conversation(session_raw="pipe:x")


def req(rid: object, method: str = "tools/call", **params: object) -> dict[str, object]:
    return {"jsonrpc": "2.0", "id": rid, "method": method, "params": params}


def test_ids_pair_by_json_value_not_by_text() -> None:
    p, conv = pairer()
    assert p.client_message(conv, req(1, name="a"), start=0.0, t=1.0) is None
    assert p.client_message(conv, req("1", name="b"), start=0.0, t=1.0) is None
    x, matched = p.server_message(conv, {"jsonrpc": "2.0", "id": "1", "result": {}}, start=0.0, t=3.0, size=10)
    assert matched and x is not None and x.params == {"name": "b"} and x.duration == 2.0 and x.response_size == 10
    x, matched = p.server_message(conv, {"jsonrpc": "2.0", "id": 1, "result": {}}, start=0.0, t=3.0)
    assert matched and x is not None and x.params == {"name": "a"}
    x, matched = p.server_message(conv, {"jsonrpc": "2.0", "id": 1, "result": {}}, start=0.0, t=3.0)
    assert (x, matched) == (None, False)  # answered twice: the second is unmatched


def test_handshake_sets_client_version_and_server_for_the_conversation() -> None:
    p, conv = pairer()
    p.client_message(conv, req(0, "initialize", protocolVersion="2025-06-18",
                                clientInfo={"name": "c", "version": "1"}), start=0.0, t=0.0)
    x, _ = p.server_message(conv, {"jsonrpc": "2.0", "id": 0, "result": {
        "protocolVersion": "2025-03-26", "serverInfo": {"name": "srv", "version": "9"}}}, start=0.0, t=0.1)
    assert x is not None and x.protocol_version == "2025-06-18"  # the requested one, as in-process
    assert x.server_name == "srv" and x.server_version == "9"
    p.client_message(conv, req(1, "ping"), start=0.0, t=0.2)
    x, _ = p.server_message(conv, {"jsonrpc": "2.0", "id": 1, "result": {}}, start=0.0, t=0.3)
    assert x is not None and x.protocol_version == "2025-03-26" and x.client_info == {"name": "c", "version": "1"}


def test_code_zero_is_an_exception_other_codes_jsonrpc_errors() -> None:
    p, conv = pairer()
    p.client_message(conv, req(1), start=0.0, t=0.0)
    p.client_message(conv, req(2), start=0.0, t=0.0)
    x0, _ = p.server_message(conv, {"jsonrpc": "2.0", "id": 1, "error": {"code": 0, "message": "boom"}}, start=0, t=1)
    x1, _ = p.server_message(conv, {"jsonrpc": "2.0", "id": 2, "error": {"code": -32601, "message": "nope"}},
                             start=0, t=1)
    assert x0 is not None and x0.status_override == ev.EXCEPTION and x0.error_code == 0
    assert x1 is not None and x1.status_override is None and x1.error_code == -32601


def test_cancel_ends_the_call_and_server_requests_pair_with_client_replies() -> None:
    p, conv = pairer()
    p.client_message(conv, req(7), start=0.0, t=0.0)
    x = p.client_message(conv, {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 7}},
                         start=0.0, t=0.5)
    assert x is not None and x.status_override == ev.CANCELLED and x.response_size == 0 and x.duration == 0.5
    x, matched = p.server_message(conv, req("s1", "roots/list"), start=0.0, t=1.0)
    assert x is None and matched
    x = p.client_message(conv, {"jsonrpc": "2.0", "id": "s1", "result": {"roots": []}}, start=0.0, t=1.25)
    assert x is not None and x.method == "roots/list" and x.extra[jsonrpc.DIRECTION] == jsonrpc.SERVER_TO_CLIENT
    assert x.duration == 0.25


def test_pending_requests_are_bounded() -> None:
    p, conv = pairer()
    for i in range(jsonrpc.MAX_PENDING + 50):
        p.client_message(conv, req(i), start=0.0, t=0.0)
    assert len(conv.client_pending) == jsonrpc.MAX_PENDING
    assert p.server_message(conv, {"jsonrpc": "2.0", "id": 0, "result": {}}, start=0, t=0)[1] is False  # evicted
    assert len(p.unanswered(conv, None, 1.0)) == jsonrpc.MAX_PENDING and not conv.client_pending


def test_parse_reasons() -> None:
    assert parse(b'{"a":1}') == ({"a": 1}, None)
    assert parse(b"\xff") == (None, "invalid_utf8")
    assert parse(b"{nope") == (None, "invalid_json")
