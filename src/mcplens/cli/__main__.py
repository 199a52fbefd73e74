"""``python -m mcplens.cli``: the same as the ``mcplens`` command."""

from mcplens.cli import run

run()
