"""Real headless Chromium against the real app served on a loopback port.

- `browser`: Debian's /usr/bin/chromium driven by Playwright for Python (no browser download
  ever); the tests are skipped with the reason when it is absent.
- `live_gateway`: the app (development settings, tmp instance, SQLite, pointed at the fake
  Zoho) served by Werkzeug's threaded server in a thread; `.url`, `.app`, `.rt`, `.fake`.
- `page`: a fresh browser context and page that records console messages; after the test it
  fails on any Content-Security-Policy violation or console error, and a screenshot of the
  last page is saved under the test's tmp_path (`shot(name)` saves more).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import pytest

from gateway.ops.database import demo
from tests.conftest import ADMIN_PASSWORD, AdminSession, serving

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
]


@pytest.fixture(scope="session")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is not installed (Debian package 'chromium'): browser tests skipped")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@dataclass
class LiveGateway:
    url: str
    app: object
    fake: object

    @property
    def rt(self):
        return self.app.extensions["gateway"]


@pytest.fixture
def live_gateway(make_app, fake_zoho, zoho_settings):
    with serving(lambda url: make_app(**zoho_settings)) as (url, app):
        demo.create_if_absent(app.extensions["gateway"].ops)
        AdminSession(app, app.test_client()).set_password()
        yield LiveGateway(url, app, fake_zoho)


def is_csp_violation(text: str) -> bool:
    return "Content Security Policy" in text or "Content-Security-Policy" in text or text.startswith("Refused to")


@pytest.fixture
def page(browser, tmp_path, request):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(10_000)
    console: list[tuple[str, str]] = []
    page.on("console", lambda message: console.append((message.type, message.text)))
    page.on("pageerror", lambda error: console.append(("pageerror", str(error))))
    page.console_messages = console
    page.expected_statuses = set()  # a test that expects e.g. a 401 answer names it here
    shots = []

    def shot(name: str, full_page: bool = True) -> str:
        path = tmp_path / f"{name}.png"
        page.screenshot(path=str(path), full_page=full_page)
        shots.append(path)
        return str(path)

    page.shot = shot
    yield page
    try:
        shot(f"{request.node.name}-last")
    finally:
        context.close()
    violations = [text for kind, text in console if is_csp_violation(text)]
    assert not violations, f"CSP violations in the browser console: {violations}"
    expected = tuple(f"the server responded with a status of {status} " for status in page.expected_statuses)
    errors = [text for kind, text in console if kind in ("error", "pageerror") and not any(e in text for e in expected)]
    assert not errors, f"errors in the browser console: {errors}"


def log_in(page, live, password: str = ADMIN_PASSWORD) -> None:
    from playwright.sync_api import expect

    page.goto(live.url + "/admin/")
    expect(page).to_have_url(live.url + "/admin/login?next=/admin/?")
    page.fill("#password", password)
    page.click("button:has-text('Log in')")
    expect(page.locator("h1#status")).to_have_text("Status")
