"""The admin console in real headless Chromium: log in, connect to the (fake) Zoho, a used
grant token explained with the connection intact, a dead job retried, the webhook secret
rotated; a phone-sized screen; and the whole thing with JavaScript switched off."""
from __future__ import annotations

import pytest
from playwright.sync_api import expect

from gateway.inbound import secrets
from gateway.outbound import queue
from gateway.zoho import connect, connection

from tests.conftest import make_dead_job

from .conftest import log_in

pytestmark = pytest.mark.browser

ACCOUNT = "5725767000000412345"


def fill_zoho_form(page, client_id, client_secret, code, account=ACCOUNT):
    page.select_option("#data_center", "us")
    page.fill("#client_id", client_id)
    page.fill("#client_secret", client_secret)
    page.fill("#grant_token", code)
    page.fill("#account_id", account)
    page.click("button[value=connect]")


def test_log_in(page, live_gateway):
    page.expected_statuses = {401}  # the wrong password below
    page.goto(live_gateway.url + "/admin/login")
    page.fill("#password", "not the password")
    page.click("button:has-text('Log in')")
    expect(page.locator(".flash-error")).to_have_text("That password is not right. Try again.")
    log_in(page, live_gateway)
    expect(page.locator("#zoho .state")).to_have_text("Not connected yet")
    page.shot("logged-in")
    page.click("button:has-text('Log out')")
    expect(page.locator(".flash-ok")).to_have_text("You are logged out.")
    page.goto(live_gateway.url + "/admin/")
    expect(page.locator("h1")).to_have_text("Log in")


def test_save_a_configuration_and_see_connected(page, live_gateway):
    client_id, client_secret = live_gateway.fake.add_client()
    log_in(page, live_gateway)
    fill_zoho_form(page, client_id, client_secret, live_gateway.fake.new_grant_code(client_id))
    expect(page.locator(".flash-ok")).to_contain_text("connected to Zoho CRM (us,")
    expect(page.locator("#zoho .state")).to_have_text("Connected")
    expect(page.locator("#zoho")).to_contain_text("expires in")
    html = page.content()
    assert client_secret not in html and client_id not in html
    assert client_id[-4:] in html
    # The form comes back empty of credentials, with the Account ID kept.
    expect(page.locator("#client_id")).to_have_value("")
    expect(page.locator("#client_secret")).to_have_value("")
    expect(page.locator("#account_id")).to_have_value(ACCOUNT)
    page.shot("connected")


def test_a_used_grant_token_shows_the_plain_words_error_and_keeps_the_connection(page, live_gateway):
    client_id, client_secret = live_gateway.fake.add_client()
    code = live_gateway.fake.new_grant_code(client_id)
    log_in(page, live_gateway)
    fill_zoho_form(page, client_id, client_secret, code)
    expect(page.locator("#zoho .state")).to_have_text("Connected")
    before = connection.status(live_gateway.rt)
    fill_zoho_form(page, client_id, client_secret, code, account="5725767000000999999")
    expect(page.locator(".flash-error")).to_have_text(
        "invalid_code: the grant token has expired or was already used; make a new one")
    expect(page.locator("#zoho .state")).to_have_text("Connected")
    after = connection.status(live_gateway.rt)
    assert after["refresh_token_last4"] == before["refresh_token_last4"] and after["account_id"] == ACCOUNT
    page.shot("used-grant")


def test_see_a_dead_job_and_retry_it(page, live_gateway):
    job_id = make_dead_job(live_gateway.rt, "Deals", 3, "Zoho refused the Deal: Stage 'Printing' is not in the picklist")
    log_in(page, live_gateway)
    expect(page.locator("#queue .state")).to_have_text("1 dead job")
    row = page.locator("#dead-jobs tbody tr")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("Stage 'Printing' is not in the picklist")
    page.shot("dead-job")
    page.click(f"button:has-text('Retry job {job_id}')")
    expect(page.locator(".flash-ok")).to_have_text(f"Job {job_id} is back in the queue; it will be sent shortly.")
    expect(page.locator("#dead-jobs")).to_contain_text("No dead jobs")
    expect(page.locator("#audit tbody tr").first).to_contain_text("retry job")
    assert queue.status(live_gateway.rt)["dead"] == 0


def test_rotate_the_webhook_secret(page, live_gateway):
    log_in(page, live_gateway)
    secret = page.locator("#webhook-secret")
    expect(secret).to_be_hidden()  # behind the "show" control
    page.click("summary:has-text('Show the webhook secret')")
    expect(secret).to_be_visible()
    old = secret.inner_text()
    assert old == secrets.webhook_secrets(live_gateway.rt)["current"]
    page.click("button:has-text('Make a new webhook secret')")
    expect(page.locator(".flash-ok")).to_contain_text("New webhook secret made.")
    page.click("summary:has-text('Show the webhook secret')")
    new = page.locator("#webhook-secret").inner_text()
    assert new != old and new == secrets.webhook_secrets(live_gateway.rt)["current"]
    page.click("summary:has-text('Show the previous secret')")
    expect(page.locator("#setup")).to_contain_text(old)
    expect(page.locator("#setup")).to_contain_text("in 23 h 59 min")
    page.shot("rotated")


def test_the_page_fits_a_phone_screen(browser, live_gateway, tmp_path):
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    try:
        page = context.new_page()
        log_in(page, live_gateway)
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"the page is {overflow}px wider than the phone's screen"
        page.screenshot(path=str(tmp_path / "phone.png"), full_page=True)
        page.screenshot(path=str(tmp_path / "phone-first-screen.png"))
    finally:
        context.close()


def test_everything_works_with_javascript_off(browser, live_gateway, tmp_path):
    context = browser.new_context(java_script_enabled=False)
    try:
        page = context.new_page()
        log_in(page, live_gateway)
        page.click("summary:has-text('Show the webhook secret')")
        expect(page.locator("#webhook-secret")).to_be_visible()
        page.click("button:has-text('Make a new webhook secret')")
        expect(page.locator(".flash-ok")).to_contain_text("New webhook secret made.")
        page.screenshot(path=str(tmp_path / "no-javascript.png"), full_page=True)
    finally:
        context.close()


def test_status_page_with_a_connected_gateway_deliveries_and_a_dead_job(page, live_gateway):
    """The screenshot a newcomer sees on a normal day with one problem (kept as status.png)."""
    import requests

    client_id, client_secret = live_gateway.fake.add_client()
    connect.configure(live_gateway.rt, data_center="us", client_id=client_id, client_secret=client_secret,
                         grant_token=live_gateway.fake.new_grant_code(client_id), account_id=ACCOUNT)
    secret = secrets.webhook_secrets(live_gateway.rt)["current"]

    def deliver(module, **params):
        return requests.post(f"{live_gateway.url}/webhooks/zoho/{module}", data=params,
                             headers={"X-Webhook-Token": secret}, timeout=10)

    ada = dict(id="5725767000000600001", email="ada@example.com", first_name="Ada", last_name="King",
               modified_time="2026-11-27T08:00:00+00:00")
    assert deliver("contacts", **ada).status_code == 200
    assert deliver("contacts", **ada).json() == {"status": "duplicate"}
    assert deliver("contacts", **dict(ada, modified_time="2026-11-26T08:00:00+00:00", first_name="Old")).json() == {"status": "stale"}
    assert deliver("contacts", id="5725767000000600002", email="grace@example.com", phone="",
                   modified_time="2026-11-27T08:05:00+00:00").status_code == 200
    make_dead_job(live_gateway.rt, "Deals", 3, "Zoho refused the Deal: INVALID_DATA Stage 'Printing' is not in the picklist")

    log_in(page, live_gateway)
    expect(page.locator("#zoho .state")).to_have_text("Connected")
    expect(page.locator("#queue .state")).to_have_text("1 dead job")
    expect(page.locator("#deliveries tbody tr")).to_have_count(4)
    expect(page.locator("#deliveries tbody tr").first).to_contain_text("applied")
    expect(page.locator(".attention li")).to_have_text(["1 push failed for good: see the dead jobs."])
    page.shot("status-first-screen", full_page=False)
    page.shot("status")


def test_connect_through_zoho_instead_of_pasting_a_grant_token(page, live_gateway):
    client_id, client_secret = live_gateway.fake.add_client()
    log_in(page, live_gateway)
    page.select_option("#data_center", "us")
    page.fill("#client_id", client_id)
    page.fill("#client_secret", client_secret)
    page.fill("#account_id", ACCOUNT)
    page.click("button[value=redirect]")
    expect(page.locator(".flash-ok")).to_have_text("Saved. Now press “Continue at Zoho” to allow access there.")
    page.click("#continue-at-zoho")
    # The fake's consent page approves at once and sends the browser back to the callback.
    expect(page.locator(".flash-ok")).to_contain_text("connected to Zoho CRM (us,")
    expect(page.locator("#zoho .state")).to_have_text("Connected")
    assert live_gateway.fake.calls["oauth.auth"] == 1
    assert live_gateway.fake.last_auth_query["redirect_uri"] == live_gateway.url + "/admin/zoho/callback"
    page.shot("connected-through-zoho")
