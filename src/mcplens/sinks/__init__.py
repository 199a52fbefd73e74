"""The event log writer (``eventlog``), on its way to ``mcplens.store.local``; exporters live in
``mcplens.exporters``."""
