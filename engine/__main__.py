"""``python -m engine``: the same as the ``sieve`` command."""

from engine.cli import run

run()
