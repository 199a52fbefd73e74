"""The audit event: one flat record per inbound MCP message, the same for every way in.

Keys follow the OpenTelemetry MCP semantic conventions where one exists (``mcp.method.name``,
``gen_ai.tool.name``, ``error.type`` ...); the rest live under ``mcplens.``. A flat dict of
JSON scalars keeps the hot path cheap and makes each stored line readable by any log shipper.

Capture paths fill an event with what they saw; the privacy stage (``mcplens.privacy.stage``)
then redacts and pseudonymises it before any sink sees it. Response content never enters one.
"""

from __future__ import annotations

from typing import Final

SCHEMA_VERSION: Final = 1

# identity of the record
EVENT_ID: Final = "event.id"  # random 128-bit hex, unique per event (dedupe / exactly-once checks)
EVENT_KIND: Final = "event.kind"  # "request" | "notification" | "negotiation" | "mcplens.health"
SCHEMA: Final = "mcplens.schema"
TIME: Final = "time"  # start, Unix epoch seconds (float)
DURATION: Final = "duration_s"  # seconds (float), handler entry to reply

# what was asked
METHOD: Final = "mcp.method.name"
TARGET: Final = "mcplens.target"  # tool / prompt name, or resource URI shape: the grouping key
TOOL_NAME: Final = "gen_ai.tool.name"
PROMPT_NAME: Final = "gen_ai.prompt.name"
RESOURCE_URI: Final = "mcp.resource.uri"  # scheme and shape only, path segments masked
OPERATION: Final = "gen_ai.operation.name"  # "execute_tool" for tools/call
ARGS: Final = "mcplens.request.args"  # {argument name: JSON size in bytes} of the values as sent
ARGUMENTS: Final = "mcplens.request.arguments"  # the arguments after the privacy stage (redacted)
#: transient: the server-declared template a resource URI matched; the privacy stage consumes it
URI_TEMPLATE_HINT: Final = "_mcplens.uri_template"
REQUEST_SIZE: Final = "mcplens.request.size_bytes"
REQUEST_ID: Final = "jsonrpc.request.id"  # the JSON-RPC id as a string (not personal: a counter)

# how it went
STATUS: Final = "mcplens.status"
ERROR_TYPE: Final = "error.type"  # JSON-RPC code, "tool_error", or exception class name
RPC_CODE: Final = "rpc.response.status_code"  # JSON-RPC error code as a string
ERROR_CATEGORY: Final = "mcplens.error.category"
ERROR_MESSAGE: Final = "mcplens.error.message"  # after the privacy stage (redacted, truncated)
REDACTIONS: Final = "mcplens.redactions"  # {placeholder kind: count} that fired on this event
RESPONSE_SIZE: Final = "mcplens.response.size_bytes"  # bytes of the JSON-RPC reply as sent
RESPONSE_TOKENS: Final = "mcplens.response.tokens_est"  # ceil(bytes / 4)
RESPONSE_ITEMS: Final = "mcplens.response.items"  # content blocks / list entries
RESPONSE_TYPES: Final = "mcplens.response.content_types"  # sorted distinct content types
#: tools/list replies only: the listed tool names, a hash of each tool's definition (name,
#: description, input and output schema: sha256 hex[:16]) to see drift, and its MCP annotations
#: that matter for security classification ({name: ["readOnly", "destructive", "openWorld"]})
RESPONSE_TOOL_NAMES: Final = "mcplens.response.tool_names"
RESPONSE_TOOL_HASHES: Final = "mcplens.response.tool_hashes"
RESPONSE_TOOL_HINTS: Final = "mcplens.response.tool_hints"

# who asked, over what
SESSION_ID: Final = "mcp.session.id"  # pseudonymous
#: how the session id was derived: "transport" (the MCP session header), "pipe" (one stdio process),
#: "connection" (one in-memory connection), "meta" (a conversation id the client sent in ``_meta`` or
#: baggage), "idle_gap" (2026-07-28 era, no session id: client + address, a new session after an idle gap)
SESSION_SOURCE: Final = "mcplens.session.source"
#: session sources mcplens derived itself, not a protocol session: no ``mcp.session.id`` for them
DERIVED_SESSION_SOURCES: Final = ("meta", "idle_gap")
CLIENT_ID: Final = "mcplens.client.id"  # pseudonymous
CLIENT_NAME: Final = "mcplens.client.name"
CLIENT_VERSION: Final = "mcplens.client.version"
CLIENT_ADDRESS: Final = "client.address"  # pseudonymous (HTTP only)
#: the top-level capabilities a client declared (initialize, or a 2026-era request's ``_meta``), sorted
CLIENT_CAPABILITIES: Final = "mcplens.client.capabilities"
TRANSPORT: Final = "network.transport"  # "pipe" (stdio), "tcp" (HTTP), "inproc" (in-memory)
PROTOCOL_VERSION: Final = "mcp.protocol.version"
TRACE_ID: Final = "trace_id"
SPAN_ID: Final = "span_id"
PARENT_SPAN_ID: Final = "parent_span_id"

# which server
SERVER_NAME: Final = "mcplens.server.name"
SERVER_VERSION: Final = "mcplens.server.version"
INSTANCE_ID: Final = "mcplens.instance.id"  # random per process
CAPTURE: Final = "mcplens.capture"  # "sdk" | "fastmcp" | "proxy"
PID: Final = "process.pid"

# the proxy's own view of the wire
PROXY_DIRECTION: Final = "mcplens.proxy.direction"  # "server_to_client" for server-initiated messages
PROXY_ERROR: Final = "mcplens.proxy.error"  # invalid_json, invalid_utf8, not_jsonrpc, unterminated_line ...
PROXY_PROTOCOL_ERRORS: Final = "mcplens.proxy.protocol_errors"  # running count in this proxy process
PROXY_MESSAGE_BYTES: Final = "mcplens.proxy.message_bytes"  # size of an unreadable message
PROXY_HTTP_STATUS: Final = "mcplens.proxy.http_status"  # on 401/403, or when no JSON-RPC reply came
PROTOCOL_ERROR_KIND: Final = "mcplens.protocol_error"  # event.kind of a message the proxy could not read

# statuses (R1)
OK: Final = "ok"
TOOL_ERROR: Final = "tool_error"
JSONRPC_ERROR: Final = "jsonrpc_error"
EXCEPTION: Final = "exception"
RATE_LIMITED: Final = "rate_limited"
UNAUTHORIZED: Final = "unauthorized"
CANCELLED: Final = "cancelled"
TIMEOUT: Final = "timeout"
#: a protocol-version probe (``server/discover``) that an older server rejected before the client
#: fell back to ``initialize``: negotiation, not a failure (recorded with event.kind "negotiation")
UNSUPPORTED: Final = "unsupported"
STATUSES: Final = (
    OK, TOOL_ERROR, JSONRPC_ERROR, EXCEPTION, RATE_LIMITED, UNAUTHORIZED, CANCELLED, TIMEOUT, UNSUPPORTED,
)
#: event.kind of a version-negotiation exchange
NEGOTIATION_KIND: Final = "negotiation"
#: statuses that are not the server failing: no error rate, session error count or alert counts them
#: (rate-limited and unauthorized calls have their own signals)
NOT_FAILURES: Final = (OK, CANCELLED, UNSUPPORTED, RATE_LIMITED, UNAUTHORIZED)

# error categories (R1): where to start debugging
CAT_TIMEOUT: Final = "backend_timeout"
CAT_CONNECTION: Final = "connection_failure"
CAT_AUTH: Final = "auth"
CAT_INVALID_PARAMS: Final = "invalid_params"
CAT_NOT_FOUND: Final = "not_found"
CAT_INTERNAL: Final = "internal"
CAT_RATE_LIMITED: Final = "rate_limited"  # the server or its upstream refused for rate (HTTP 429, a quota)
CAT_UPSTREAM_4XX: Final = "upstream_4xx"  # an upstream HTTP API rejected the request (other 4xx)
CAT_UPSTREAM_5XX: Final = "upstream_5xx"  # an upstream HTTP API failed (5xx other than 502/503/504)
#: every category, in the order a user reads them
CATEGORIES: Final = (CAT_TIMEOUT, CAT_CONNECTION, CAT_AUTH, CAT_RATE_LIMITED, CAT_INVALID_PARAMS, CAT_NOT_FOUND,
                     CAT_UPSTREAM_4XX, CAT_UPSTREAM_5XX, CAT_INTERNAL)

# health records (event.kind == "mcplens.health"): the pipeline's own counters
HEALTH_KIND: Final = "mcplens.health"
HEALTH_ENQUEUED: Final = "mcplens.health.enqueued"
HEALTH_WRITTEN: Final = "mcplens.health.written"
HEALTH_DROPPED: Final = "mcplens.health.dropped"  # queue full
HEALTH_FAULTS: Final = "mcplens.health.faults"  # capture or sink errors, swallowed
HEALTH_WRITE_FAILURES: Final = "mcplens.health.write_failures"  # events the event log could not write
PROCESS_CPU: Final = "process.cpu.time"  # seconds of CPU (user + system) the server process used so far
PROCESS_MEMORY: Final = "process.memory.usage"  # resident memory in bytes at the time of the record
PROCESS_START: Final = "process.start_time"  # when the process's capture started, epoch seconds

#: Every column the store exposes, with its DuckDB type. The reading side (DuckDB, PostgreSQL)
#: builds its schema from this one list so a field added here appears everywhere.
COLUMNS: Final[dict[str, str]] = {
    EVENT_ID: "VARCHAR",
    EVENT_KIND: "VARCHAR",
    SCHEMA: "INTEGER",
    TIME: "DOUBLE",
    DURATION: "DOUBLE",
    METHOD: "VARCHAR",
    TARGET: "VARCHAR",
    TOOL_NAME: "VARCHAR",
    PROMPT_NAME: "VARCHAR",
    RESOURCE_URI: "VARCHAR",
    OPERATION: "VARCHAR",
    ARGS: "JSON",
    ARGUMENTS: "JSON",
    REQUEST_SIZE: "BIGINT",
    REQUEST_ID: "VARCHAR",
    STATUS: "VARCHAR",
    ERROR_TYPE: "VARCHAR",
    RPC_CODE: "VARCHAR",
    ERROR_CATEGORY: "VARCHAR",
    ERROR_MESSAGE: "VARCHAR",
    REDACTIONS: "JSON",
    RESPONSE_SIZE: "BIGINT",
    RESPONSE_TOKENS: "BIGINT",
    RESPONSE_ITEMS: "BIGINT",
    RESPONSE_TYPES: "VARCHAR[]",
    RESPONSE_TOOL_NAMES: "VARCHAR[]",
    RESPONSE_TOOL_HASHES: "JSON",
    RESPONSE_TOOL_HINTS: "JSON",
    SESSION_ID: "VARCHAR",
    SESSION_SOURCE: "VARCHAR",
    CLIENT_ID: "VARCHAR",
    CLIENT_NAME: "VARCHAR",
    CLIENT_VERSION: "VARCHAR",
    CLIENT_ADDRESS: "VARCHAR",
    CLIENT_CAPABILITIES: "VARCHAR[]",
    TRANSPORT: "VARCHAR",
    PROTOCOL_VERSION: "VARCHAR",
    TRACE_ID: "VARCHAR",
    SPAN_ID: "VARCHAR",
    PARENT_SPAN_ID: "VARCHAR",
    SERVER_NAME: "VARCHAR",
    SERVER_VERSION: "VARCHAR",
    INSTANCE_ID: "VARCHAR",
    CAPTURE: "VARCHAR",
    PID: "BIGINT",
    PROXY_DIRECTION: "VARCHAR",
    PROXY_ERROR: "VARCHAR",
    PROXY_PROTOCOL_ERRORS: "BIGINT",
    PROXY_MESSAGE_BYTES: "BIGINT",
    PROXY_HTTP_STATUS: "BIGINT",
    HEALTH_ENQUEUED: "BIGINT",
    HEALTH_WRITTEN: "BIGINT",
    HEALTH_DROPPED: "BIGINT",
    HEALTH_FAULTS: "BIGINT",
    HEALTH_WRITE_FAILURES: "BIGINT",
    PROCESS_CPU: "DOUBLE",
    PROCESS_MEMORY: "BIGINT",
    PROCESS_START: "DOUBLE",
}
