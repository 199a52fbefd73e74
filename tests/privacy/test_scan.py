"""The leak scan's filter drops only mcplens's own top-level measurements, never a sent value."""

from __future__ import annotations

import json

from tests.privacy.scan import unmeasured_lines


def test_the_scan_drops_top_level_measurements_and_keeps_everything_sent() -> None:
    event = {"time": 1795917008.91581626, "duration_s": 0.000691581626, "mcplens.request.size_bytes": 91581626,
             "mcp.tool.name": "t91581626", "args": {"lat": 91.581626, "iban": "ES1136606191581626852985"}}
    text = unmeasured_lines(json.dumps(event) + "\nplain 0.91581626 line\n[1.91581626]")
    assert "1795917008" not in text and "0.00069" not in text  # measured floats gone
    kept = ["size_bytes\": 91581626", "t91581626", "91.581626", "ES1136606191581626852985",
            "plain 0.91581626 line", "[1.91581626]"]
    assert [k for k in kept if k not in text] == []
