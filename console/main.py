"""Entry point: ``python -m console.main`` serves the console.

Reads the engine settings (``SIEVE_*``) and the console's
(``SIEVE_CONSOLE_*``), then serves on ``SIEVE_CONSOLE_HOST``:``PORT``
(127.0.0.1:8080 by default).
"""

from __future__ import annotations

from nicegui import ui

from console.app import build
from console.config import ConsoleSettings
from engine.config import Settings
from engine.logs import configure_logging

__all__ = ["main"]


def main() -> None:
    """Read settings, build the app and serve it until interrupted."""
    configure_logging()
    settings = Settings.from_env()
    console = ConsoleSettings.from_env()
    secret = build(settings, console)
    ui.run(
        host=console.host,
        port=console.port,
        title="Sieve operations",
        storage_secret=secret,
        reload=False,
        show=False,
        uvicorn_logging_level="warning",
    )


if __name__ in {"__main__", "__mp_main__"}:
    main()
