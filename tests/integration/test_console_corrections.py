"""Operator look-ups and the corrections pages in a real browser, fully audited."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from typing import Any

import pytest

from engine.config import Settings
from engine.store import CqlStore
from perf.people import PersonFactory
from tests.conftest import GatewayThread
from tests.console_support import (
    ARTIFACTS,
    chromium,
    login,
    serve_console,
    wait_for,
    write_users,
)

pytestmark = pytest.mark.integration

playwright_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def console_url(
    settings: Settings, gateway: GatewayThread, tmp_path_factory: Any
) -> Iterator[str]:
    """The console in a subprocess on this module's keyspace, one operator."""
    users = write_users(
        tmp_path_factory.mktemp("console") / "users.toml", {"op": ("operator", "o-pw")}
    )
    with serve_console(settings, users, tmp_path_factory.mktemp("console-log")) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's chromium, headless, driven by Playwright."""
    with chromium(playwright_api) as instance:
        yield instance


def test_operator_lookup_is_audited_with_the_console_user(
    console_url: str, browser: Any, store: CqlStore
) -> None:
    """A never-sampled number shows 'no record' and writes an operator audit row."""
    number = PersonFactory(8181).person().id_number
    page = login(browser, console_url, "op", "o-pw")
    page.goto(f"{console_url}/operator")

    page.get_by_test_id("id-number").fill(number)
    page.get_by_test_id("lookup").click()
    result = page.get_by_test_id("lookup-result")
    wait_for(lambda: "no record" in result.inner_text(), 20, "look-up")

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
    page = login(browser, console_url, "op", "o-pw")
    page.goto(f"{console_url}/corrections")

    page.get_by_test_id("form-name").fill(person.name)
    page.get_by_test_id("form-number").fill(person.id_number)
    page.get_by_test_id("form-phone").fill("13900001111")
    page.get_by_test_id("form-submit").click()
    result = page.get_by_test_id("form-result")
    wait_for(lambda: "Queued as" in result.inner_text(), 20, "the request to queue")
    correction_id = result.inner_text().split()[-1]
    page.goto(f"{console_url}/corrections/{correction_id}")
    count = page.get_by_test_id("candidate-count")
    wait_for(lambda: "candidate" in count.inner_text(), 60, "candidates")
    page.get_by_test_id("reject").click()
    state = page.get_by_test_id("request-state")
    wait_for(lambda: "Refused" in state.inner_text(), 20, "the refusal")
    page.get_by_test_id("resolve-note").fill("caller gave a wrong site")
    page.get_by_test_id("reject").click()
    wait_for(lambda: "REJECTED" in state.inner_text(), 20, "the rejection")
    page.screenshot(path=str(ARTIFACTS / "correction.png"), full_page=True)
    page.reload()
    events = page.get_by_test_id("events")
    wait_for(lambda: "rejected" in events.inner_text(), 30, "the history")

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
    page = login(browser, console_url, "op", "o-pw")
    page.goto(f"{console_url}/corrections")
    before = page.get_by_test_id("queue").inner_text()

    page.get_by_test_id("form-name").fill(person.name)
    page.get_by_test_id("form-number").fill(person.id_number)
    page.get_by_test_id("form-phone").fill("123")
    page.get_by_test_id("form-submit").click()
    result = page.get_by_test_id("form-result")
    wait_for(lambda: "Refused" in result.inner_text(), 20, "the refusal")
    time.sleep(0.5)

    assert "phone" in result.inner_text()
    assert before == page.get_by_test_id("queue").inner_text()
