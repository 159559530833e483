"""Operator look-ups and the corrections pages in a real browser, fully audited."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from console.auth import hash_password
from engine.config import REPO_ROOT, Settings
from engine.store import CqlStore
from perf.people import PersonFactory
from tests.conftest import GatewayThread, free_port

pytestmark = pytest.mark.integration

playwright_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
ARTIFACTS = REPO_ROOT / "artifacts" / "console"


def _wait(check: Callable[[], Any], timeout_s: float, what: str) -> Any:
    end = time.monotonic() + timeout_s
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.3)


@pytest.fixture(scope="module")
def console_url(
    settings: Settings, gateway: GatewayThread, tmp_path_factory: Any
) -> Iterator[str]:
    """The console in a subprocess on this module's keyspace, one operator."""
    users = tmp_path_factory.mktemp("console") / "users.toml"
    users.write_text(
        f'[users.op]\nrole = "operator"\npassword = "{hash_password("o-pw")}"\n',
        encoding="utf-8",
    )
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")},
        "SIEVE_CQL_KEYSPACE": settings.cql_keyspace,
        "SIEVE_KEYS_FILE": str(settings.keys_file),
        "SIEVE_GATEWAY_PORT": str(settings.gateway_port),
        "SIEVE_CONSOLE_PORT": str(port),
        "SIEVE_CONSOLE_USERS_FILE": str(users),
        "SIEVE_LOG_LEVEL": "WARNING",
    }
    log_path = tmp_path_factory.mktemp("console-log") / "console.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "console.main"],
            cwd=REPO_ROOT,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:

            def up() -> bool:
                assert proc.poll() is None, log_path.read_text(errors="replace")
                try:
                    with urllib.request.urlopen(f"{url}/login", timeout=2):
                        return True
                except OSError:
                    return False

            _wait(up, 60, "the console to serve")
            yield url
        finally:
            proc.terminate()
            proc.wait(15)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's chromium, headless, driven by Playwright."""
    if not Path(CHROMIUM).exists():
        pytest.skip("apt-get install -y chromium")
    with playwright_api.sync_playwright() as pw:
        instance = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


def _login(browser: Any, url: str, user: str, password: str) -> Any:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.goto(f"{url}/login")
    page.get_by_test_id("username").fill(user)
    page.get_by_test_id("password").fill(password)
    page.get_by_test_id("login").click()
    page.wait_for_url(f"{url}/")
    return page


def test_operator_lookup_is_audited_with_the_console_user(
    console_url: str, browser: Any, store: CqlStore
) -> None:
    """A never-sampled number shows 'no record' and writes an operator audit row."""
    number = PersonFactory(8181).person().id_number
    page = _login(browser, console_url, "op", "o-pw")
    page.goto(f"{console_url}/operator")

    page.get_by_test_id("id-number").fill(number)
    page.get_by_test_id("lookup").click()
    result = page.get_by_test_id("lookup-result")
    _wait(lambda: "no record" in result.inner_text(), 20, "look-up")

    rows = store.execute_sync(
        "SELECT actor_kind, masked FROM {ks}.lookup_audit_by_actor"
        " WHERE actor = 'op' AND day = %s",
        (dt.datetime.now(dt.UTC).date(),),
    )
    assert ("operator", f"{number[:6]}********{number[-4:]}") in {
        (r.actor_kind, r.masked) for r in rows
    }
    assert number not in page.content()


def test_phone_request_is_queued_viewed_and_rejected(
    console_url: str, browser: Any
) -> None:
    """Form -> queue -> request page with candidates -> reject with a note."""
    person = PersonFactory(8282).person()
    page = _login(browser, console_url, "op", "o-pw")
    page.goto(f"{console_url}/corrections")

    page.get_by_test_id("form-name").fill(person.name)
    page.get_by_test_id("form-number").fill(person.id_number)
    page.get_by_test_id("form-phone").fill("13900001111")
    page.get_by_test_id("form-submit").click()
    result = page.get_by_test_id("form-result")
    _wait(lambda: "Queued as" in result.inner_text(), 20, "the request to queue")
    correction_id = result.inner_text().split()[-1]
    page.goto(f"{console_url}/corrections/{correction_id}")
    count = page.get_by_test_id("candidate-count")
    _wait(lambda: "candidate" in count.inner_text(), 60, "candidates")
    page.get_by_test_id("reject").click()
    state = page.get_by_test_id("request-state")
    _wait(lambda: "Refused" in state.inner_text(), 20, "the refusal")
    page.get_by_test_id("resolve-note").fill("caller gave a wrong site")
    page.get_by_test_id("reject").click()
    _wait(lambda: "REJECTED" in state.inner_text(), 20, "the rejection")
    page.screenshot(path=str(ARTIFACTS / "correction.png"), full_page=True)
    page.reload()
    events = page.get_by_test_id("events")
    _wait(lambda: "rejected" in events.inner_text(), 30, "the history")

    history = events.inner_text()
    assert "submitted" in history and "viewed" in history
    assert "operator:op" in history
    assert person.id_number not in page.content()
    assert "REJECTED" in page.get_by_test_id("request-state").inner_text()


def test_bad_phone_request_is_refused_on_the_form(
    console_url: str, browser: Any
) -> None:
    """A malformed phone is refused with the field named; nothing is queued."""
    person = PersonFactory(8383).person()
    page = _login(browser, console_url, "op", "o-pw")
    page.goto(f"{console_url}/corrections")
    before = page.get_by_test_id("queue").inner_text()

    page.get_by_test_id("form-name").fill(person.name)
    page.get_by_test_id("form-number").fill(person.id_number)
    page.get_by_test_id("form-phone").fill("123")
    page.get_by_test_id("form-submit").click()
    result = page.get_by_test_id("form-result")
    _wait(lambda: "Refused" in result.inner_text(), 20, "the refusal")
    time.sleep(0.5)

    assert "phone" in result.inner_text()
    assert before == page.get_by_test_id("queue").inner_text()
