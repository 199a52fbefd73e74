"""Turn one request and its reply into an event. Shared by every way in.

Everything here runs on the writer thread, never on the request path. Each capture path
(SDK middleware, FastMCP, the proxies) reduces what it saw to an :class:`Exchange` of plain
JSON-shaped data; :func:`build_event` does the rest, so the same call yields the same fields
whichever way it was seen.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from mcplens import _json
from mcplens import event as ev
from mcplens.capture import sessions

#: ids only need to be unique, not secret: the PRNG (reseeded in forked children) skips a syscall
_bits = random.getrandbits
#: ids drawn ahead, 80 hex digits each (an event id, a trace id, a span id): one draw and one
#: format per 64 events instead of per event
_ID_POOL: list[str] = []
_POOL_DRAW = 64


def event_ids() -> str:
    """80 random hex digits: ``[:32]`` an event id, ``[32:64]`` a trace id, ``[64:]`` a span id."""
    try:
        return _ID_POOL.pop()
    except IndexError:  # list.pop is atomic: two threads never get the same ids
        text = f"{_bits(320 * _POOL_DRAW):0{80 * _POOL_DRAW}x}"
        _ID_POOL.extend([text[i : i + 80] for i in range(0, 80 * _POOL_DRAW, 80)])
        return _ID_POOL.pop()
MODERN_CLIENT_INFO = "io.modelcontextprotocol/clientInfo"
MODERN_PROTOCOL = "io.modelcontextprotocol/protocolVersion"
MODERN_CAPABILITIES = "io.modelcontextprotocol/clientCapabilities"
JSONRPC_INVALID_PARAMS = -32602
JSONRPC_METHOD_NOT_FOUND = -32601
JSONRPC_INTERNAL = -32603
JSONRPC_RESOURCE_NOT_FOUND = -32002
#: the JSON-RPC error code mcplens's rate limiter answers with (capture/ratelimit.py); recorded
#: as status ``rate_limited`` by every capture path, so the proxy's limiter is counted the same way
RATE_LIMITED_CODE = -32029


@dataclass(slots=True)  # built once per captured message on the writer thread: slots build faster
class Exchange:
    """What a capture path saw of one inbound message, as plain data."""

    method: str
    params: Any
    request_id: Any
    start: float  # epoch seconds
    duration: float  # seconds
    is_notification: bool = False
    result: Any = None  # the reply's ``result`` member (a dict), when it succeeded
    error_code: int | None = None  # the reply's JSON-RPC error code
    error_message: str | None = None  # used to categorise only; never stored
    error_data: Any = None
    exception_type: str | None = None  # a raw exception's class name, when one escaped
    status_override: str | None = None  # cancelled / timeout / rate_limited / unauthorized
    response_size: int | None = None  # bytes as sent, when the capture path knows them exactly
    transport: str | None = None
    protocol_version: str | None = None
    session_raw: str | None = None
    client_info: dict[str, Any] | None = None
    client_address: str | None = None
    server_name: str | None = None
    server_version: str | None = None
    capture: str = "sdk"
    uri_template: str | None = None  # the server's own template the resource URI matched
    extra: dict[str, Any] = field(default_factory=dict)


def argument_shape(arguments: Any) -> dict[str, int] | None:
    """Argument names and the JSON size of each value. Values themselves are never kept."""
    if not isinstance(arguments, dict):
        return None
    dumps, chunk, size = _json.dumps, _json.CHUNK, _json.size
    # one C call per value; a long string goes through size(), which hands the GIL over between pieces
    return {
        (k if type(k) is str else str(k)): len(dumps(v)) if type(v) is not str or len(v) <= chunk else size(v)
        for k, v in arguments.items()
    }


def uri_shape(uri: Any) -> str | None:
    """Keep a resource URI's scheme and the number of its parts; mask everything else.

    Authorities and path segments name people, records and host layout (all on the guide's
    never-collect list) in ways no pattern can tell from a harmless word, so with no template
    to go by ``file:///home/alice/notes.txt`` becomes ``file:///*/*/*`` and ``user://alice/x``
    ``user://*/*``.
    """
    if not isinstance(uri, str) or not uri:
        return None
    try:
        parts = urlsplit(uri)
    except ValueError:
        return "[invalid-uri]"
    scheme = parts.scheme or "?"
    authority = "*" if parts.netloc else ""
    segments = [s for s in parts.path.split("/") if s]
    path = "".join("/*" for _ in segments)
    query = "?*" if parts.query else ""
    return f"{scheme}://{authority}{path}{query}"


_EXPRESSION = re.compile(r"\{([+#./;?&]?)[^}]*\}")


class UriTemplates:
    """The server's own resource URIs and URI templates, to name a read by what the server declared.

    ``user://{ident}/profile`` is the server author's text, not the user's, so it may be kept,
    where the URI actually read (``user://alice/profile``) may not. Learned from
    ``resources/list`` and ``resources/templates/list`` replies (any capture path sees those),
    or handed over by the capture when the framework exposes them.
    """

    def __init__(self) -> None:
        self._exact: set[str] = set()
        self._templates: dict[str, re.Pattern[str]] = {}

    def learn_template(self, template: str) -> None:
        if template in self._templates or len(self._templates) >= 4096:
            return
        pattern, pos = [], 0
        for m in _EXPRESSION.finditer(template):
            pattern.append(re.escape(template[pos : m.start()]))
            op = m.group(1)
            pattern.append({"": "[^/?#]+", "+": ".+", "#": "(#.*)?", "?": "(\\?.*)?", "&": "(&.*)?"}.get(op, "[^?#]*"))
            pos = m.end()
        pattern.append(re.escape(template[pos:]))
        self._templates[template] = re.compile("".join(pattern))

    def learn_uri(self, uri: str) -> None:
        if len(self._exact) < 65536:
            self._exact.add(uri)

    def learn_result(self, method: str, result: Any) -> None:
        if not isinstance(result, dict):
            return
        if method == "resources/templates/list":
            for t in result.get("resourceTemplates") or ():
                if isinstance(t, dict) and isinstance(t.get("uriTemplate"), str):
                    self.learn_template(t["uriTemplate"])
        elif method == "resources/list":
            for r in result.get("resources") or ():
                if isinstance(r, dict) and isinstance(r.get("uri"), str):
                    self.learn_uri(r["uri"])

    def match(self, uri: str) -> str | None:
        if uri in self._exact:
            return uri
        for template, pattern in self._templates.items():
            if pattern.fullmatch(uri):
                return template
        return None


def parse_traceparent(meta: Any) -> tuple[str | None, str | None]:
    """(trace id, parent span id) from a W3C ``traceparent`` in ``params._meta``."""
    if not isinstance(meta, dict):
        return None, None
    tp = meta.get("traceparent")
    if not isinstance(tp, str):
        return None, None
    bits = tp.strip().split("-")
    if len(bits) < 4 or len(bits[1]) != 32 or len(bits[2]) != 16:
        return None, None
    try:
        int(bits[1], 16), int(bits[2], 16)
    except ValueError:
        return None, None
    return bits[1], bits[2]


_TIMEOUT = re.compile(r"time[d ]?\s?out|deadline exceeded|timeout|etimedout", re.I)
_CONNECTION = re.compile(
    r"connection (refused|reset|error|aborted|closed|issue|problem|lost|failed|failure|dropped)|"
    r"connect(ion)?error|unreachable|name resolution|(could not|cannot|can't|unable to|failed to) connect|"
    r"broken pipe|econnrefused|econnreset|enotfound|eai_again|epipe|getaddrinfo|socket hang up|no route to host|"
    r"temporarily unavailable|\bdns\b|service unavailable|bad gateway|gateway timeout|network (error|is down)",
    re.I,
)
_AUTH = re.compile(
    r"unauthori[sz]ed|forbidden|permission denied|not permitted|insufficient (scope|permission)|"
    r"invalid (api )?key|api key|credential|authenticat|access denied|token (expired|invalid)|invalid token",
    re.I,
)
_RATE = re.compile(r"rate.?limit|too many requests|quota (exceeded|exhausted)|throttl", re.I)
_INVALID = re.compile(r"validation error|invalid (param|argument|input|request)|missing required|field required|"
                      r"must be|should be a valid|typeerror|valueerror|bad request", re.I)
_NOT_FOUND = re.compile(r"unknown tool|unknown resource|unknown prompt|not found|no such|does not exist", re.I)
#: an HTTP status quoted in a message: "status code 404", "HTTP 503", "returned 429", httpx's "'404 Not Found'"
_HTTP_STATUS = re.compile(
    r"(?:status(?:[ _]code)?|http(?:/\d(?:\.\d)?)?|returned|responded(?: with)?|response|error|code)\W{0,3}"
    r"([1-5]\d\d)\b|'([45]\d\d) [A-Z][a-z]",
    re.I,
)

_TYPE_CATEGORIES = {
    "TimeoutError": ev.CAT_TIMEOUT,
    "ReadTimeout": ev.CAT_TIMEOUT,
    "ConnectTimeout": ev.CAT_TIMEOUT,
    "ConnectionError": ev.CAT_CONNECTION,
    "ConnectionRefusedError": ev.CAT_CONNECTION,
    "ConnectionResetError": ev.CAT_CONNECTION,
    "ConnectionAbortedError": ev.CAT_CONNECTION,
    "BrokenPipeError": ev.CAT_CONNECTION,
    "ConnectError": ev.CAT_CONNECTION,
    "RemoteProtocolError": ev.CAT_CONNECTION,
    "NetworkError": ev.CAT_CONNECTION,
    "ReadError": ev.CAT_CONNECTION,
    "WriteError": ev.CAT_CONNECTION,
    "gaierror": ev.CAT_CONNECTION,
    "ServerExited": ev.CAT_CONNECTION,
    "PermissionError": ev.CAT_AUTH,
    "ValidationError": ev.CAT_INVALID_PARAMS,
    "ValueError": ev.CAT_INVALID_PARAMS,
    "TypeError": ev.CAT_INVALID_PARAMS,
    "KeyError": ev.CAT_NOT_FOUND,
    "FileNotFoundError": ev.CAT_NOT_FOUND,
    "LookupError": ev.CAT_NOT_FOUND,
}
#: words in an exception class name no table lists (a library's own ``FooTimeoutError``, ``ApiAuthError``)
_TYPE_WORDS = (
    (re.compile(r"timeout|timedout", re.I), ev.CAT_TIMEOUT),
    (re.compile(r"ratelimit|toomanyrequests|throttl|quota", re.I), ev.CAT_RATE_LIMITED),
    (re.compile(r"connect|network|unreachable|socket", re.I), ev.CAT_CONNECTION),
    (re.compile(r"auth|permission|forbidden|credential|accessdenied", re.I), ev.CAT_AUTH),
    (re.compile(r"notfound|nosuch|missing", re.I), ev.CAT_NOT_FOUND),
    (re.compile(r"validation|invalid|schema", re.I), ev.CAT_INVALID_PARAMS),
)
#: JSON-RPC codes with a meaning of their own (the spec's, the MCP SDKs', mcplens's rate limiter)
_RPC_CATEGORIES = {
    JSONRPC_METHOD_NOT_FOUND: ev.CAT_NOT_FOUND,
    JSONRPC_RESOURCE_NOT_FOUND: ev.CAT_NOT_FOUND,
    JSONRPC_INVALID_PARAMS: ev.CAT_INVALID_PARAMS,
    -32600: ev.CAT_INVALID_PARAMS,  # invalid request
    -32700: ev.CAT_INVALID_PARAMS,  # parse error
    -32001: ev.CAT_TIMEOUT,  # the TypeScript SDK's RequestTimeout
    -32000: ev.CAT_CONNECTION,  # the TypeScript SDK's ConnectionClosed
    RATE_LIMITED_CODE: ev.CAT_RATE_LIMITED,
}


def http_category(status: int) -> str | None:
    """The category of an HTTP status (RFC 9110) an upstream API answered with."""
    if status in (401, 403, 407):
        return ev.CAT_AUTH
    if status in (404, 410):
        return ev.CAT_NOT_FOUND
    if status in (408, 504):
        return ev.CAT_TIMEOUT
    if status == 429:
        return ev.CAT_RATE_LIMITED
    if status in (502, 503):
        return ev.CAT_CONNECTION
    if status in (400, 422):
        return ev.CAT_INVALID_PARAMS
    if 400 <= status < 500:
        return ev.CAT_UPSTREAM_4XX
    if 500 <= status < 600:
        return ev.CAT_UPSTREAM_5XX
    return None


def categorize(code: int | None, message: str | None, exception_type: str | None) -> str:
    """Where to start debugging, in the words users know (timeout, connection, auth, rate limited,
    invalid params, not found, upstream 4xx/5xx, internal): read from the exception type, an HTTP
    status the message quotes, the message's words, then the JSON-RPC code."""
    text = message or ""
    if exception_type:
        short = exception_type.rsplit(".", 1)[-1]
        if short in _TYPE_CATEGORIES:
            return _TYPE_CATEGORIES[short]
        for pattern, category in _TYPE_WORDS:
            if pattern.search(short):
                return category
    for m in _HTTP_STATUS.finditer(text):
        category = http_category(int(m.group(1) or m.group(2)))
        if category is not None:
            return category
    for pattern, category in (
        (_TIMEOUT, ev.CAT_TIMEOUT),
        (_RATE, ev.CAT_RATE_LIMITED),
        (_CONNECTION, ev.CAT_CONNECTION),
        (_AUTH, ev.CAT_AUTH),
        (_NOT_FOUND, ev.CAT_NOT_FOUND),
        (_INVALID, ev.CAT_INVALID_PARAMS),
    ):
        if pattern.search(text):
            return category
    if code is not None and code in _RPC_CATEGORIES:
        return _RPC_CATEGORIES[code]
    return ev.CAT_INTERNAL


def _tool_error_text(result: dict[str, Any]) -> str:
    """The text of an ``isError`` result, read to categorise the failure and then dropped."""
    content = result.get("content")
    if not isinstance(content, list):
        return ""
    # not cut per block: a secret cut in half escapes its pattern; the privacy stage truncates after
    return " ".join(str(b.get("text", "")) for b in content if isinstance(b, dict))[:65536]


#: where a reply lists its items, by method
_REPLY_LISTS = {
    "tools/call": "content",
    "resources/read": "contents",
    "prompts/get": "messages",
    "tools/list": "tools",
    "prompts/list": "prompts",
    "resources/list": "resources",
    "resources/templates/list": "resourceTemplates",
}


def reply_items(method: str, result: Any) -> tuple[int | None, list[str] | None]:
    """(items, sorted distinct content types) of a reply that lists items."""
    key = _REPLY_LISTS.get(method)
    if key is None or not isinstance(result, dict):
        return None, None
    items = result.get(key)
    if not isinstance(items, list):
        return None, None
    kinds: set[str] = set()
    if method == "resources/read":
        for item in items:
            if isinstance(item, dict):
                kinds.add(str(item.get("mimeType") or ("blob" if "blob" in item else "text")))
    elif method == "prompts/get":
        for item in items:
            content = item.get("content") if isinstance(item, dict) else None
            if isinstance(content, dict) and "type" in content:
                kinds.add(str(content["type"]))
    else:
        kinds = {str(item["type"]) for item in items if type(item) is dict and "type" in item} or {
            str(item["type"]) for item in items if isinstance(item, dict) and "type" in item}
    if len(kinds) < 2:
        return len(items), (list(kinds) or None)
    return len(items), sorted(kinds)


_HINTS = (("readOnlyHint", "readOnly"), ("destructiveHint", "destructive"), ("openWorldHint", "openWorld"))


def tool_hash(tool: dict[str, Any]) -> str:
    """sha256[:16] of a tool's name, description and schemas: changes when its definition does."""
    core = {k: tool.get(k) for k in ("name", "description", "inputSchema", "outputSchema")}
    return hashlib.sha256(json.dumps(core, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _tool_definitions(e: dict[str, Any], result: Any) -> None:
    """A tools/list reply's tool names, definition hashes and security-relevant annotations."""
    tools = result.get("tools") if isinstance(result, dict) else None
    if not isinstance(tools, list):
        return
    names: list[str] = []
    hashes: dict[str, str] = {}
    hints: dict[str, list[str]] = {}
    for t in tools:
        if not isinstance(t, dict) or not isinstance(t.get("name"), str):
            continue
        names.append(t["name"])
        hashes[t["name"]] = tool_hash(t)
        notes = t.get("annotations") if isinstance(t.get("annotations"), dict) else {}
        hints[t["name"]] = [label for key, label in _HINTS if notes.get(key) is True]
    e[ev.RESPONSE_TOOL_NAMES] = names
    e[ev.RESPONSE_TOOL_HASHES] = hashes
    e[ev.RESPONSE_TOOL_HINTS] = hints


def reply_size(exchange: Exchange) -> int | None:
    """Bytes of the JSON-RPC reply as a compact JSON line (what stdio and HTTP JSON carry)."""
    if exchange.is_notification:
        return None
    if exchange.response_size is not None:
        return exchange.response_size
    envelope: dict[str, Any] = {"jsonrpc": "2.0", "id": exchange.request_id}
    if exchange.error_code is not None:
        err: dict[str, Any] = {"code": exchange.error_code, "message": exchange.error_message or ""}
        if exchange.error_data is not None:
            err["data"] = exchange.error_data
        envelope["error"] = err
    else:
        envelope["result"] = exchange.result if exchange.result is not None else {}
    return _json.size(envelope)


def _arguments(e: dict[str, Any], arguments: Any) -> dict[str, int] | None:
    shape = argument_shape(arguments)
    if shape is not None:
        e[ev.ARGS] = shape
        e[ev.ARGUMENTS] = arguments
    return shape


#: below this many bytes of argument values, encoding a whole object again is cheaper than summing
SMALL = 4096


def arguments_size(arguments: dict[str, Any], shape: dict[str, int]) -> int:
    """JSON bytes of an arguments object from its shape: each value is encoded once, not twice."""
    return _json.keys_size(shape) + sum(shape.values())


def params_size(params: dict[str, Any], shape: dict[str, int] | None) -> int:
    """JSON bytes of a request's params, reusing the sizes of its arguments when measured already."""
    arguments = params.get("arguments")
    if shape is None or sum(shape.values()) < SMALL or not isinstance(arguments, dict) or not all(
        isinstance(k, str) for k in arguments
    ):
        return _json.size(params)  # small: one C-level encode beats summing in Python
    rest = {k: v for k, v in params.items() if k != "arguments"}
    return _json.size(rest) + (1 if rest else 0) + len('"arguments":') + arguments_size(arguments, shape)


def _error_text(exchange: Exchange, status: str) -> str | None:
    """The error's own words: a JSON-RPC error message, an exception's text, an isError result's text."""
    if status == ev.TOOL_ERROR and isinstance(exchange.result, dict):
        return _tool_error_text(exchange.result) or None
    if status in (ev.OK, ev.CANCELLED):
        return None
    return exchange.error_message or None


def client_identity(exchange: Exchange) -> tuple[str | None, str | None]:
    info = exchange.client_info
    if not isinstance(info, dict):
        params = exchange.params if isinstance(exchange.params, dict) else {}
        meta = params.get("_meta") if isinstance(params.get("_meta"), dict) else {}
        info = params.get("clientInfo") if exchange.method == "initialize" else meta.get(MODERN_CLIENT_INFO)
    if not isinstance(info, dict):
        return None, None
    name, version = info.get("name"), info.get("version")
    # not cut here: the privacy stage redacts first and truncates after, so no fragment escapes a pattern
    return (str(name) if name is not None else None, str(version) if version is not None else None)


def status_of(exchange: Exchange) -> tuple[str, str | None, str | None, str | None]:
    """(status, error.type, rpc code, error category) for an exchange."""
    if exchange.status_override:
        status = exchange.status_override
        code = str(exchange.error_code) if exchange.error_code is not None else None
        category = {
            ev.TIMEOUT: ev.CAT_TIMEOUT,
            ev.UNAUTHORIZED: ev.CAT_AUTH,
            ev.RATE_LIMITED: ev.CAT_RATE_LIMITED,
        }.get(status, categorize(exchange.error_code, exchange.error_message, exchange.exception_type))
        if status in (ev.CANCELLED, ev.UNSUPPORTED):  # protocol, not a failure: nowhere to debug
            category = None
        return status, exchange.exception_type or code or status, code, category
    if exchange.exception_type is not None:
        code = str(exchange.error_code if exchange.error_code is not None else JSONRPC_INTERNAL)
        category = categorize(exchange.error_code, exchange.error_message, exchange.exception_type)
        return ev.EXCEPTION, exchange.exception_type, code, category
    if exchange.error_code == RATE_LIMITED_CODE:
        return ev.RATE_LIMITED, str(RATE_LIMITED_CODE), str(RATE_LIMITED_CODE), ev.CAT_RATE_LIMITED
    if exchange.error_code is not None:
        code = str(exchange.error_code)
        return ev.JSONRPC_ERROR, code, code, categorize(exchange.error_code, exchange.error_message, None)
    result = exchange.result
    if exchange.method == "tools/call" and isinstance(result, dict) and result.get("isError") is True:
        return ev.TOOL_ERROR, "tool_error", None, categorize(None, _tool_error_text(result), None)
    return ev.OK, None, None, None


def client_capabilities(method: str, params: dict[str, Any], meta: dict[str, Any] | None) -> list[str] | None:
    """The top-level capabilities a client declared: ``initialize``'s, or a 2026-era request's ``_meta``.
    Tool lists can depend on them (a server shows some tools only to clients with sampling)."""
    caps = params.get("capabilities") if method == "initialize" else (meta or {}).get(MODERN_CAPABILITIES)
    if not isinstance(caps, dict):
        return None
    return sorted(str(k) for k, v in caps.items() if v is not None and v is not False)[:32]


def build_event(exchange: Exchange, base: dict[str, Any]) -> dict[str, Any]:
    """The event for one exchange, as seen: arguments, error text, URI and ids still raw.

    It is not safe to keep until the privacy stage has run over it, which the pipeline does
    before any sink sees it.
    """
    method = exchange.method
    params = exchange.params if isinstance(exchange.params, dict) else {}
    meta = params.get("_meta") if isinstance(params.get("_meta"), dict) else None
    name = params.get("name") if isinstance(params.get("name"), str) else None
    e: dict[str, Any] = dict(base)
    ids = event_ids()
    e[ev.EVENT_ID] = ids[:32]
    e[ev.EVENT_KIND] = "notification" if exchange.is_notification else "request"
    e[ev.SCHEMA] = ev.SCHEMA_VERSION
    e[ev.TIME] = exchange.start
    e[ev.DURATION] = exchange.duration
    e[ev.METHOD] = method
    e[ev.CAPTURE] = exchange.capture
    if exchange.server_name is not None:
        e[ev.SERVER_NAME] = exchange.server_name
    if exchange.server_version is not None:
        e[ev.SERVER_VERSION] = exchange.server_version

    shape = None
    if method == "tools/call":
        e[ev.OPERATION] = "execute_tool"
        if name:
            e[ev.TOOL_NAME] = e[ev.TARGET] = name
        shape = _arguments(e, params.get("arguments"))
    elif method == "prompts/get":
        if name:
            e[ev.PROMPT_NAME] = e[ev.TARGET] = name
        shape = _arguments(e, params.get("arguments"))
    elif method in ("resources/read", "resources/subscribe", "resources/unsubscribe"):
        uri = params.get("uri")
        if isinstance(uri, str) and uri:
            e[ev.RESOURCE_URI] = e[ev.TARGET] = uri
            if exchange.uri_template:
                e[ev.URI_TEMPLATE_HINT] = exchange.uri_template
    if params:
        e[ev.REQUEST_SIZE] = params_size(params, shape)
    if exchange.request_id is not None:
        e[ev.REQUEST_ID] = str(exchange.request_id)

    if not exchange.is_notification:
        status, error_type, code, category = status_of(exchange)
        e[ev.STATUS] = status
        if error_type is not None:
            e[ev.ERROR_TYPE] = error_type
        if code is not None:
            e[ev.RPC_CODE] = code
        if category is not None:
            e[ev.ERROR_CATEGORY] = category
        message = _error_text(exchange, status)
        if message:
            e[ev.ERROR_MESSAGE] = message
        size = reply_size(exchange)
        if size is not None:
            e[ev.RESPONSE_SIZE] = size
            e[ev.RESPONSE_TOKENS] = math.ceil(size / 4)
        items, kinds = reply_items(method, exchange.result)
        if items is not None:
            e[ev.RESPONSE_ITEMS] = items
        if kinds:
            e[ev.RESPONSE_TYPES] = kinds
        if method == "tools/list":
            _tool_definitions(e, exchange.result)

    client_name, client_version = client_identity(exchange)
    if client_name is not None:
        e[ev.CLIENT_NAME] = client_name
    if client_version is not None:
        e[ev.CLIENT_VERSION] = client_version
    client_key = "|".join([client_name or "", client_version or "", exchange.client_address or ""])
    if client_key.strip("|"):
        e[ev.CLIENT_ID] = client_key
    if not exchange.is_notification or exchange.session_raw:
        sessions.derive(e, exchange.session_raw, meta, client_key, exchange.client_address)
    caps = client_capabilities(method, params, meta)
    if caps is not None:
        e[ev.CLIENT_CAPABILITIES] = caps
    if exchange.client_address:
        e[ev.CLIENT_ADDRESS] = exchange.client_address
    if exchange.transport:
        e[ev.TRANSPORT] = exchange.transport
    version = exchange.protocol_version or (meta or {}).get(MODERN_PROTOCOL)
    if method == "initialize" and isinstance(params.get("protocolVersion"), str) and not exchange.protocol_version:
        version = params["protocolVersion"]
    if version:
        e[ev.PROTOCOL_VERSION] = str(version)
    trace_id, parent = parse_traceparent(meta)
    e[ev.TRACE_ID] = trace_id or ids[32:64]
    e[ev.SPAN_ID] = ids[64:]
    if parent:
        e[ev.PARENT_SPAN_ID] = parent
    e.update(exchange.extra)
    return e
