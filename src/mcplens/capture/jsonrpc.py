"""Pair JSON-RPC messages seen on the wire into :class:`Exchange` records. Shared by both proxies.

A proxy sees bytes, not handler calls: a request from the client and, later, the server's reply
to it. This module keeps the requests in flight per conversation, matches each reply by id and
emits one :class:`Exchange` per request (or notification), filled the way the in-process capture
fills it, so :func:`~mcplens.capture.common.build_event` makes the same event for the same call.

It also records what only a proxy can see: requests the *server* sends (sampling, elicitation,
roots) paired with the client's answer, and server notifications, marked with
:data:`DIRECTION` = ``server_to_client``. Anything that is not JSON-RPC is a protocol error.

Everything here runs on the pipeline's writer thread (one drain at a time), never on the relay
path, so no lock is needed and the relay only pays for an enqueue.
"""

from __future__ import annotations

import collections
import json
from dataclasses import dataclass, field
from typing import Any, Final

from mcplens import event as ev
from mcplens.capture.common import MODERN_CLIENT_INFO, MODERN_PROTOCOL, Exchange, UriTemplates

#: event keys only the proxies write (defined with the rest of the schema in mcplens.event)
DIRECTION: Final = ev.PROXY_DIRECTION
PROTOCOL_ERROR: Final = ev.PROXY_ERROR
PROTOCOL_ERRORS: Final = ev.PROXY_PROTOCOL_ERRORS
MESSAGE_BYTES: Final = ev.PROXY_MESSAGE_BYTES
HTTP_STATUS: Final = ev.PROXY_HTTP_STATUS
PROTOCOL_ERROR_KIND: Final = ev.PROTOCOL_ERROR_KIND

SERVER_INFO_META: Final = "io.modelcontextprotocol/serverInfo"
CLIENT_TO_SERVER: Final = "client_to_server"
SERVER_TO_CLIENT: Final = "server_to_client"

#: requests in flight kept per conversation; past this the oldest is forgotten (a client that
#: never gets replies must not grow the proxy without bound)
MAX_PENDING: Final = 10_000

#: what the SDK's dispatcher answers for an exception it does not map (see capture/sdk.py)
UNMAPPED_EXCEPTION_CODE: Final = 0
#: the 2025-era HTTP answer to a request the client cancelled (mcp's REQUEST_CANCELLED, LSP's RequestCancelled)
REQUEST_CANCELLED_CODE: Final = -32800
#: the version probe of a 2026-era client, and how a server that predates it refuses it: method
#: not found (stdio, any JSON-RPC server), invalid request, or the server-defined -32000 an HTTP
#: server sends with 400 for a request outside any session
PROBE_METHOD: Final = "server/discover"
PROBE_REFUSALS: Final = frozenset({-32601, -32600, -32000})
PROBE_REFUSAL_HTTP: Final = frozenset({400, 404, 405})
#: ids of cancelled requests remembered per conversation, so a late reply is not "unmatched"
MAX_CANCELLED: Final = 1024


@dataclass
class Pending:
    """A request waiting for its reply."""

    method: str
    params: Any
    request_id: Any
    start: float  # epoch seconds
    t0: float  # perf_counter
    protocol_version: str | None
    client_info: dict[str, Any] | None
    client_address: str | None


@dataclass
class Conversation:
    """What one client/server pair has established: who the client is, which protocol version."""

    session_raw: str | None = None
    client_info: dict[str, Any] | None = None
    protocol_version: str | None = None
    #: client requests in flight, keyed by (scope, id): HTTP scopes them to the POST they came in
    client_pending: collections.OrderedDict[tuple[Any, str], Pending] = field(
        default_factory=collections.OrderedDict
    )
    #: server-initiated requests in flight, keyed by id
    server_pending: collections.OrderedDict[str, Pending] = field(default_factory=collections.OrderedDict)
    #: requests recorded as cancelled whose late reply (or none) is still to come, keyed by id
    cancelled: collections.OrderedDict[str, None] = field(default_factory=collections.OrderedDict)


def _key(request_id: Any) -> str:
    """Ids compare by JSON value: ``1`` and ``"1"`` are different requests."""
    return f"{type(request_id).__name__}:{request_id}"


def parse(data: bytes) -> tuple[Any, str | None]:
    """(message, None) for a JSON line, or (None, reason) when it cannot be read."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None, "invalid_utf8"
    try:
        return json.loads(text), None
    except ValueError:
        return None, "invalid_json"


def is_message(obj: Any) -> bool:
    """A JSON-RPC 2.0 request, notification or reply (loosely: the SDK is the judge)."""
    return isinstance(obj, dict) and ("method" in obj or "result" in obj or "error" in obj)


class Pairer:
    """Turns a stream of JSON-RPC messages into exchanges. One per proxy; conversations are passed in.

    ``server_name``/``server_version`` start as the operator's overrides; otherwise the server's
    own ``serverInfo`` from its ``initialize`` / ``server/discover`` reply is used.
    """

    def __init__(self, *, transport: str, server_name: str | None = None, server_version: str | None = None,
                 name_fixed: bool = False) -> None:
        self.transport = transport
        self.server_name = server_name
        self.server_version = server_version
        self._name_fixed = name_fixed
        #: the server's declared resource URIs and templates, learned from the replies to the
        #: client's resources/list and resources/templates/list (a proxy sees nothing else of them)
        self.uris = UriTemplates()

    # -- inbound --------------------------------------------------------------------------------
    def client_message(
        self, conv: Conversation, msg: dict[str, Any], *, start: float, t: float, scope: Any = None,
        protocol_version: str | None = None, client_address: str | None = None,
    ) -> Exchange | None:
        """A message from the client. Returns an exchange for a notification or a reply to a
        server request; a request is held until its reply."""
        method = msg.get("method")
        if isinstance(method, str):
            params = msg.get("params")
            info = self._client_info(conv, method, params)
            version = protocol_version or (conv.protocol_version if method != "initialize" else None)
            if "id" not in msg:
                x = self._exchange(conv, method, params, None, start, 0.0, version, info, client_address)
                x.is_notification = True
                if method == "notifications/cancelled" and isinstance(params, dict):
                    cancelled = self._cancelled(conv, scope, params.get("requestId"), t)
                    if cancelled is not None:
                        return cancelled  # the cancelled call is the record; its notification rides along
                return x
            pending = Pending(method, params, msg.get("id"), start, t, version, info, client_address)
            table = conv.client_pending
            table[(scope, _key(msg.get("id")))] = pending
            while len(table) > MAX_PENDING:
                table.popitem(last=False)
            return None
        answered = conv.server_pending.pop(_key(msg.get("id")), None)
        if answered is None:
            return None
        x = self._from_pending(conv, answered, t)
        if x.client_address is None:  # a server request has no address of its own: the client's that answered
            x.client_address = client_address
        self._fill_reply(x, msg)
        x.extra[DIRECTION] = SERVER_TO_CLIENT
        return x

    def server_message(
        self, conv: Conversation, msg: dict[str, Any], *, start: float, t: float, scope: Any = None,
        size: int | None = None,
    ) -> tuple[Exchange | None, bool]:
        """A message from the server: (exchange or None, matched). ``matched`` is False for a
        reply whose request was never seen (counted as a protocol error by the caller)."""
        method = msg.get("method")
        if isinstance(method, str):
            params = msg.get("params")
            if "id" not in msg:
                x = self._exchange(conv, method, params, None, start, 0.0, conv.protocol_version, None, None)
                x.is_notification = True
                x.extra[DIRECTION] = SERVER_TO_CLIENT
                return x, True
            pending = Pending(method, params, msg.get("id"), start, t, conv.protocol_version, None, None)
            conv.server_pending[_key(msg.get("id"))] = pending
            while len(conv.server_pending) > MAX_PENDING:
                conv.server_pending.popitem(last=False)
            return None, True
        key = _key(msg.get("id"))
        found = conv.client_pending.pop((scope, key), None)
        if found is None:
            # the reply to a call already recorded as cancelled (the 2025 HTTP era answers -32800)
            return None, conv.cancelled.pop(key, False) is None
        self._learn(conv, found, msg)  # first: the handshake's own event carries the server's name
        x = self._from_pending(conv, found, t)
        self._fill_reply(x, msg)
        x.response_size = size
        self._name_resource(x)
        self.probe_refused(x)
        return x, True

    def only_pending(self, conv: Conversation, scope: Any) -> Any:
        """The id of the one client request of ``scope`` still waiting, else None."""
        ids = [p.request_id for k, p in conv.client_pending.items() if k[0] == scope]
        return ids[0] if len(ids) == 1 else None

    @staticmethod
    def probe_refused(x: Exchange, *, http_status: int | None = None) -> bool:
        """A ``server/discover`` the server refused as unknown is version negotiation, not a
        failure: the client falls back to ``initialize``. Recorded with event.kind
        ``negotiation`` and status ``unsupported``, which no error rate counts."""
        if x.method != PROBE_METHOD:
            return False
        refused = x.error_code in PROBE_REFUSALS if x.error_code is not None else (
            x.result is None and http_status in PROBE_REFUSAL_HTTP)
        if not refused or x.exception_type is not None:
            return False
        x.status_override, x.error_message, x.error_data = ev.UNSUPPORTED, None, None
        x.extra[ev.EVENT_KIND] = ev.NEGOTIATION_KIND
        if x.error_code is None and http_status is not None:
            x.extra[HTTP_STATUS] = http_status
        return True

    def unanswered(self, conv: Conversation, scope: Any, t: float) -> list[Exchange]:
        """Client requests of ``scope`` still waiting (the stream or the server ended first)."""
        keys = [k for k in conv.client_pending if k[0] == scope]
        return [self._from_pending(conv, conv.client_pending.pop(k), t) for k in keys]

    # -- helpers --------------------------------------------------------------------------------
    def _cancelled(self, conv: Conversation, scope: Any, request_id: Any, t: float) -> Exchange | None:
        """``notifications/cancelled`` ends a request with no reply: record it as the SDK does."""
        if request_id is None:
            return None
        key = _key(request_id)
        pending = conv.client_pending.pop((scope, key), None)
        if pending is None:  # over HTTP the cancellation comes in a POST of its own
            found = next((k for k in conv.client_pending if k[1] == key), None)
            pending = conv.client_pending.pop(found) if found is not None else None
        if pending is None:
            return None
        conv.cancelled[key] = None
        while len(conv.cancelled) > MAX_CANCELLED:
            conv.cancelled.popitem(last=False)
        x = self._from_pending(conv, pending, t)
        x.status_override = ev.CANCELLED
        x.exception_type = "CancelledError"
        x.response_size = 0
        return x

    def _client_info(self, conv: Conversation, method: str, params: Any) -> dict[str, Any] | None:
        """The client's name/version: ``clientInfo`` of ``initialize`` for the rest of the
        conversation, or the 2026 ``_meta`` key on each request (which wins, as in-process)."""
        if not isinstance(params, dict):
            return conv.client_info
        if method == "initialize" and isinstance(params.get("clientInfo"), dict):
            conv.client_info = params["clientInfo"]
            return conv.client_info
        meta = params.get("_meta")
        if isinstance(meta, dict) and isinstance(meta.get(MODERN_CLIENT_INFO), dict):
            return meta[MODERN_CLIENT_INFO]
        return conv.client_info

    def _name_resource(self, x: Exchange) -> None:
        """A read is named by the template it matched, as in-process capture names it."""
        if x.result is not None:
            self.uris.learn_result(x.method, x.result)
        params = x.params
        if x.method == "resources/read" and isinstance(params, dict) and isinstance(params.get("uri"), str):
            x.uri_template = self.uris.match(params["uri"])

    def _learn(self, conv: Conversation, pending: Pending, reply: dict[str, Any]) -> None:
        """The negotiated protocol version and the server's own name, from the handshake reply."""
        result = reply.get("result")
        if not isinstance(result, dict):
            return
        if pending.method == "initialize" and isinstance(result.get("protocolVersion"), str):
            conv.protocol_version = result["protocolVersion"]
        info = result.get("serverInfo")  # the handshake era
        meta = result.get("_meta")
        if info is None and isinstance(meta, dict):
            info = meta.get(SERVER_INFO_META)  # the 2026 era: server/discover's result _meta
        if isinstance(info, dict) and not self._name_fixed:
            if isinstance(info.get("name"), str):
                self.server_name = info["name"]
            if info.get("version") is not None:
                self.server_version = str(info["version"])

    def _exchange(
        self, conv: Conversation, method: str, params: Any, request_id: Any, start: float, duration: float,
        version: str | None, info: dict[str, Any] | None, address: str | None,
    ) -> Exchange:
        if version is None and isinstance(params, dict):
            meta = params.get("_meta")
            if isinstance(meta, dict) and isinstance(meta.get(MODERN_PROTOCOL), str):
                version = meta[MODERN_PROTOCOL]
        if method == "initialize" and isinstance(params, dict) and isinstance(params.get("protocolVersion"), str):
            version = params["protocolVersion"]  # the requested version, as in-process records it
        return Exchange(
            method=method, params=params, request_id=request_id, start=start, duration=duration,
            transport=self.transport, protocol_version=version, session_raw=conv.session_raw,
            client_info=info, client_address=address, server_name=self.server_name,
            server_version=self.server_version, capture="proxy",
        )

    def _from_pending(self, conv: Conversation, p: Pending, t: float) -> Exchange:
        return self._exchange(conv, p.method, p.params, p.request_id, p.start, max(0.0, t - p.t0),
                              p.protocol_version, p.client_info, p.client_address)

    @staticmethod
    def _fill_reply(x: Exchange, reply: dict[str, Any]) -> None:
        """Result or error, mapped the way in-process capture maps what the handler did."""
        error = reply.get("error")
        if isinstance(error, dict):
            code = error.get("code")
            x.error_code = code if isinstance(code, int) else None
            message = error.get("message")
            x.error_message = message if isinstance(message, str) else None
            x.error_data = error.get("data")
            if x.error_code == UNMAPPED_EXCEPTION_CODE:
                # in-process sees the exception itself; on the wire only code 0 and its message remain
                x.status_override = ev.EXCEPTION
            elif x.error_code == REQUEST_CANCELLED_CODE:
                x.status_override, x.exception_type = ev.CANCELLED, "CancelledError"
            elif x.error_code is None:
                x.error_code = 0
        else:
            x.result = reply.get("result")
