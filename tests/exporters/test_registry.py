"""The exporter registry: every name the settings accept maps to an Exporter of that name, and
the pipeline runs an exporter's processor on sanitized events before any sink."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mcplens import config, exporters
from mcplens.config import Settings
from mcplens.exporters.base import Exporter, ExporterContext
from mcplens.pipeline import Pipeline
from tests.conftest import read_events


def test_every_configurable_name_is_a_registered_exporter_of_that_name() -> None:
    assert set(exporters.REGISTRY) == set(config.EXPORTERS)
    for name in exporters.REGISTRY:
        cls = exporters.exporter_class(name)
        assert issubclass(cls, Exporter) and cls.name == name


class Stamp(Exporter):
    """Adds a field in its processor, records what its export is given."""

    name = "stamp"

    def __init__(self) -> None:
        self.seen: list[Mapping[str, Any]] = []
        self.ctx: ExporterContext | None = None

    def setup(self, ctx: ExporterContext) -> None:
        self.ctx = ctx

    def processor(self) -> Any:
        def stamp(e: dict[str, Any]) -> dict[str, Any]:
            e["mcplens.stamp"] = e.get("mcplens.request.arguments", {}).get("email")
            return e
        return stamp

    def export(self, events: Sequence[Mapping[str, Any]]) -> None:
        self.seen.extend(events)


def test_the_processor_sees_sanitized_events_and_the_log_and_exporters_see_its_fields(tmp_path: Path) -> None:
    pipeline = Pipeline(Settings(home=tmp_path / "home", flush_interval=60, handle_sigterm=False))
    stamp = Stamp()
    try:
        stamp.setup(ExporterContext(counters=lambda: dict(pipeline.counters), fault=pipeline.fault))
        pipeline.add_processor(stamp.processor())
        pipeline.add_exporter(stamp)
        pipeline.submit(lambda _: [{"event.kind": "request", "event.id": "e1", "mcp.method.name": "tools/call",
                                    "gen_ai.tool.name": "send",
                                    "mcplens.request.arguments": {"email": "alice@example.com"}}], None)
        pipeline.flush()
    finally:
        pipeline.close()
    (e,) = [e for e in stamp.seen if e["event.kind"] == "request"]
    assert e["mcplens.stamp"] == e["mcplens.request.arguments"]["email"] == "[REDACTED:EMAIL]"  # sanitized
    (logged,) = [x for x in read_events(tmp_path / "home") if x["event.kind"] == "request"]
    assert logged["mcplens.stamp"] == "[REDACTED:EMAIL]"  # before the event log
    assert stamp.ctx is not None and stamp.ctx.counters()["written"] == 1
