"""The shared event builder's small pure parts: categories, URI shapes, trace context."""

from __future__ import annotations

import pytest

from mcplens.capture.common import UriTemplates, argument_shape, categorize, parse_traceparent, uri_shape


@pytest.mark.parametrize(
    ("code", "message", "exc", "expected"),
    [
        (None, "backend timed out after 30s", None, "backend_timeout"),
        (None, "query exceeded deadline exceeded", None, "backend_timeout"),
        (None, "connection refused by db:5432", None, "connection_failure"),
        (None, "upstream returned 503 Service Unavailable", None, "connection_failure"),
        (None, "502 Bad Gateway", None, "connection_failure"),
        (None, "invalid API key for provider", None, "auth"),
        (None, "HTTP 401 from upstream", None, "auth"),
        (None, "Unknown tool: nope", None, "not_found"),
        (None, "1 validation error for addArguments", None, "invalid_params"),
        (-32601, "Method not found", None, "not_found"),
        (-32602, "Invalid request parameters", None, "invalid_params"),
        (0, "something odd", "RuntimeError", "internal"),
        (0, "whatever", "ConnectionRefusedError", "connection_failure"),
        (0, "whatever", "TimeoutError", "backend_timeout"),
        (None, "Error executing tool crash", None, "internal"),
    ],
)
def test_categories(code: int | None, message: str, exc: str | None, expected: str) -> None:
    assert categorize(code, message, exc) == expected


@pytest.mark.parametrize(
    ("uri", "shape"),
    [
        ("notes://note/alice-42", "notes://*/*"),
        ("file:///home/alice/notes.txt", "file:///*/*/*"),
        ("https://alice@example.com/x?token=1", "https://*/*?*"),
        ("postgres://user:pw@db.internal:5432/prod", "postgres://*/*"),
        ("docs://page", "docs://*"),
        ("", None),
        (None, None),
    ],
)
def test_uri_shape_keeps_no_identifying_part(uri: str | None, shape: str | None) -> None:
    assert uri_shape(uri) == shape


def test_uri_templates_name_a_read_by_the_servers_own_template() -> None:
    uris = UriTemplates()
    uris.learn_result("resources/templates/list", {"resourceTemplates": [
        {"uriTemplate": "user://{ident}/profile"}, {"uriTemplate": "file:///{+path}"},
        {"uriTemplate": "search://q{?term,page}"},
    ]})
    uris.learn_result("resources/list", {"resources": [{"uri": "docs://readme"}]})
    assert uris.match("user://alice/profile") == "user://{ident}/profile"
    assert uris.match("user://alice/settings") is None
    assert uris.match("file:///home/alice/notes.txt") == "file:///{+path}"
    assert uris.match("search://q?term=x&page=2") == "search://q{?term,page}"
    assert uris.match("docs://readme") == "docs://readme"
    assert uris.match("docs://other") is None


def test_traceparent_from_meta() -> None:
    tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    assert parse_traceparent({"traceparent": tp}) == ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7")
    assert parse_traceparent({"traceparent": "garbage"}) == (None, None)
    assert parse_traceparent(None) == (None, None)


def test_argument_shape_keeps_names_and_sizes_only() -> None:
    assert argument_shape({"q": "secret words", "n": 10, "nested": {"k": [1, 2]}}) == {
        "q": 14, "n": 2, "nested": len('{"k":[1,2]}'),
    }
    assert argument_shape(["not", "a", "dict"]) is None
