"""The fast encoder (orjson) must write what the standard library's compact encoder wrote, and
fall back to it, not fail, on what orjson refuses."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import uuid

import pytest

from mcplens import _json


def reference(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


@dataclasses.dataclass
class Point:
    x: int


CASES = [
    {"a": 1, "b": [1, 2.5, None, True, False], "c": {"d": "é ☃ \U0001f600"}},
    {"ctl": "tab\tnl\ncr\rnul\x00bell\x07 quote\" back\\ u2028\u2028"},
    [1.0, 0.1, -0.0, 123456.789, 1.5e300, 2**63 - 1, -(2**63)],
    {"big": 2**70},  # beyond 64 bits: orjson refuses, the stdlib writes it
    {"lone": "\ud800x"},  # a lone surrogate: orjson refuses, the stdlib writes it
    {1: "int key", "s": "str key"},
    {"when": dt.datetime(2026, 11, 28, 15, 0, tzinfo=dt.UTC), "p": Point(3), "u": uuid.UUID(int=7)},
    {"obj": object.__new__(type("Opaque", (), {"__str__": lambda self: "opaque!"}))},
    "just a string",
    [],
    {},
]


@pytest.mark.parametrize("value", CASES, ids=range(len(CASES)))
def test_compact_matches_the_standard_library(value: object) -> None:
    assert _json.compact(value) == reference(value)
    assert _json.dumps(value) == reference(value).encode("utf-8", "surrogatepass")


@pytest.mark.parametrize("value", CASES, ids=range(len(CASES)))
def test_size_is_the_utf8_length_of_the_compact_text(value: object) -> None:
    assert _json.size(value) == len(reference(value).encode("utf-8", "surrogatepass"))


def test_a_long_string_is_sized_exactly_in_pieces() -> None:
    s = ("x\"\\\n\x01é" * (_json.CHUNK // 3))[: _json.CHUNK * 2 + 5]
    assert _json.size(s) == len(reference(s).encode("utf-8"))


def test_the_fast_encoder_is_in_use() -> None:
    """orjson is a dependency: the writer's cost per event depends on it (bench/overhead.py)."""
    assert _json.dumps.__module__ == _json.__name__
    assert "orjson" in _json.dumps.__code__.co_names or "_orjson_dumps" in _json.dumps.__code__.co_names


def test_exponents_may_be_spelled_differently_but_read_back_the_same() -> None:
    """The one documented difference: floats in exponent range may be spelled differently
    (``1e-7`` for ``1e-07``, ``-0.00003`` for ``-3e-05``); they read back equal, sizes within bytes."""
    values = [1e-7, 2.5e-12, 1e16, -3e-5]
    assert json.loads(_json.compact(values)) == values
    assert abs(_json.size(values) - len(reference(values))) <= 3 * len(values)
