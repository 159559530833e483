"""structlog set-up shared by every Sieve process.

Events are short fixed names with key-value fields. Below-level calls are
no-ops (a filtering bound logger), so debug events on hot paths cost almost
nothing in production. ``SIEVE_LOG_JSON=1`` switches to one JSON object per
line for log shippers.
"""

from __future__ import annotations

import logging
import os
import sys

import structlog

__all__ = ["configure_logging"]


def configure_logging(level: str | None = None, *, json: bool | None = None) -> None:
    """Configure structlog for this process.

    Args:
        level: minimum level name; defaults to ``SIEVE_LOG_LEVEL`` or INFO.
        json: render JSON lines; defaults to ``SIEVE_LOG_JSON``.
    """
    name = (level or os.environ.get("SIEVE_LOG_LEVEL", "INFO")).upper()
    numeric = logging.getLevelNamesMapping().get(name, logging.INFO)
    as_json = json if json is not None else os.environ.get("SIEVE_LOG_JSON") == "1"
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if as_json
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
