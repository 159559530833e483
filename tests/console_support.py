"""Running the real console for browser tests: users, the process, chromium."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from console.auth import hash_password
from engine.config import REPO_ROOT, Settings
from tests.conftest import free_port

CHROMIUM = "/usr/bin/chromium"
"""Debian's chromium; Playwright drives it, nothing is downloaded."""
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
ARTIFACTS = REPO_ROOT / "artifacts" / "console"
"""Screenshots land here (git-ignored)."""


def wait_for(
    check: Callable[[], Any], timeout_s: float, what: str, *, every_s: float = 0.3
) -> Any:
    """Poll ``check`` until it returns something truthy; fail after the timeout."""
    end = time.monotonic() + timeout_s
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(every_s)


def write_users(path: Path, users: Mapping[str, tuple[str, str]]) -> Path:
    """A console users file: name -> (role, password)."""
    path.write_text(
        "".join(
            f'[users.{name}]\nrole = "{role}"\npassword = "{hash_password(pw)}"\n'
            for name, (role, pw) in users.items()
        ),
        encoding="utf-8",
    )
    return path


@contextlib.contextmanager
def serve_console(
    settings: Settings,
    users: Path,
    log_dir: Path,
    *,
    extra_env: Mapping[str, str] | None = None,
    ready_path: str = "/login",
    ready_text: bytes = b"",
    timeout_s: float = 60,
) -> Iterator[str]:
    """The console in a subprocess on the settings' keyspace and gateway.

    Yields its URL once ``ready_path`` answers with ``ready_text`` in it.
    """
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")},
        "SIEVE_CQL_KEYSPACE": settings.cql_keyspace,
        "SIEVE_KEYS_FILE": str(settings.keys_file),
        "SIEVE_GATEWAY_PORT": str(settings.gateway_port),
        "SIEVE_CONSOLE_PORT": str(port),
        "SIEVE_CONSOLE_USERS_FILE": str(users),
        "SIEVE_LOG_LEVEL": "WARNING",
        **(extra_env or {}),
    }
    log_path = log_dir / "console.log"
    url = f"http://127.0.0.1:{port}"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "console.main"],
            cwd=REPO_ROOT,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        try:

            def up() -> bool:
                assert proc.poll() is None, log_path.read_text(errors="replace")
                try:
                    with urllib.request.urlopen(f"{url}{ready_path}", timeout=2) as r:
                        return ready_text in r.read()
                except OSError:
                    return False

            wait_for(up, timeout_s, "the console to serve")
            yield url
        finally:
            proc.terminate()
            proc.wait(15)


@contextlib.contextmanager
def chromium(playwright_api: Any) -> Iterator[Any]:
    """Debian's chromium, headless, driven by Playwright."""
    if not Path(CHROMIUM).exists():
        pytest.skip("apt-get install -y chromium")
    with playwright_api.sync_playwright() as pw:
        instance = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            instance.close()


def login(
    browser: Any,
    url: str,
    user: str,
    password: str,
    *,
    viewport: tuple[int, int] = (1400, 1000),
) -> Any:
    """A new page logged in as ``user``, on the city page."""
    width, height = viewport
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    page.goto(f"{url}/login")
    page.get_by_test_id("username").fill(user)
    page.get_by_test_id("password").fill(password)
    page.get_by_test_id("login").click()
    page.wait_for_url(f"{url}/")
    return page
