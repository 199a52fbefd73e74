"""Error categories in the words users know, from exception types, HTTP statuses, messages and JSON-RPC codes."""

from __future__ import annotations

import pytest

from mcplens import event as ev
from mcplens.capture.common import RATE_LIMITED_CODE, Exchange, categorize, status_of

CASES = [
    # exception types, builtin and from libraries (httpx, aiohttp, requests), qualified or not
    (None, "boom", "ConnectionError", ev.CAT_CONNECTION),
    (None, "", "httpx.ConnectError", ev.CAT_CONNECTION),
    (None, "", "ClientConnectorError", ev.CAT_CONNECTION),
    (None, "", "ReadTimeout", ev.CAT_TIMEOUT),
    (None, "", "asyncpg.exceptions.QueryTimeoutError", ev.CAT_TIMEOUT),
    (None, "", "StripeRateLimitError", ev.CAT_RATE_LIMITED),
    (None, "", "GoogleAuthError", ev.CAT_AUTH),
    (None, "secret.txt", "FileNotFoundError", ev.CAT_NOT_FOUND),
    # HTTP statuses quoted in a message
    (None, "upstream API returned status code 404", None, ev.CAT_NOT_FOUND),
    (None, "Client error '403 Forbidden' for url 'https://api.example.test/v1'", "HTTPStatusError", ev.CAT_AUTH),
    (None, "Server error '500 Internal Server Error' for url 'https://x.test'", "HTTPStatusError",
     ev.CAT_UPSTREAM_5XX),
    (None, "HTTP 409 conflict from the CRM", None, ev.CAT_UPSTREAM_4XX),
    (None, "the API responded with 429", None, ev.CAT_RATE_LIMITED),
    (None, "status: 503", None, ev.CAT_CONNECTION),
    (None, "request failed with status code 504", None, ev.CAT_TIMEOUT),
    (None, "HTTP 422 unprocessable", None, ev.CAT_INVALID_PARAMS),
    # messages
    (None, "There was a connection issue talking to the index", None, ev.CAT_CONNECTION),
    (None, "connect ECONNREFUSED 127.0.0.1:6379", None, ev.CAT_CONNECTION),
    (None, "getaddrinfo ENOTFOUND db.internal", None, ev.CAT_CONNECTION),
    (None, "Connection refused", None, ev.CAT_CONNECTION),
    (None, "deadline exceeded after 30s", None, ev.CAT_TIMEOUT),
    (None, "quota exceeded for project", None, ev.CAT_RATE_LIMITED),
    (None, "permission denied for table payroll", None, ev.CAT_AUTH),
    (None, "Unknown tool: frobnicate", None, ev.CAT_NOT_FOUND),
    (None, "Input validation error: 'a' is not of type 'integer'", None, ev.CAT_INVALID_PARAMS),
    # JSON-RPC codes when the words say nothing
    (-32602, "bad", None, ev.CAT_INVALID_PARAMS),
    (-32601, "nope", None, ev.CAT_NOT_FOUND),
    (-32001, "x", None, ev.CAT_TIMEOUT),
    (-32000, "x", None, ev.CAT_CONNECTION),
    (0, "something odd", "RuntimeError", ev.CAT_INTERNAL),
]


@pytest.mark.parametrize(("code", "message", "exc", "category"), CASES)
def test_category(code: int | None, message: str, exc: str | None, category: str) -> None:
    assert categorize(code, message, exc) == category
    assert category in ev.CATEGORIES


def test_refusals_have_their_own_category_and_are_not_failures() -> None:
    limited = Exchange("tools/call", {"name": "t"}, 1, 0.0, 0.0, error_code=RATE_LIMITED_CODE, error_message="x")
    status, _, _, category = status_of(limited)
    assert (status, category) == (ev.RATE_LIMITED, ev.CAT_RATE_LIMITED)
    denied = Exchange("initialize", {}, 1, 0.0, 0.0, status_override=ev.UNAUTHORIZED, error_code=401)
    status, _, _, category = status_of(denied)
    assert (status, category) == (ev.UNAUTHORIZED, ev.CAT_AUTH)
    assert ev.RATE_LIMITED in ev.NOT_FAILURES and ev.UNAUTHORIZED in ev.NOT_FAILURES
