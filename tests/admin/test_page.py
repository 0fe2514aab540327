"""The admin page as the admin uses it: save the Zoho settings against the fake Zoho, read the
status, press each action and see its message and its audit row; nothing secret in the HTML
or the logs beyond what the page must show (the webhook and events secrets, behind "show")."""
from __future__ import annotations

import html
import re

import pytest

from gateway import audit
from gateway.admin import panels
from gateway.zoho import connection
from tests.conftest import ADMIN_PASSWORD, AdminSession, csrf_token_from, logged_in, rt_of

ACCOUNT = "5725767000000412345"


@pytest.fixture
def page_app(make_app, zoho_settings, state_db_url):
    return make_app(DATABASE_URL=state_db_url, **zoho_settings)


@pytest.fixture
def admin(page_app):
    return logged_in(page_app)


def page_text(admin, path="/admin/"):
    response = admin.client.get(path)
    assert response.status_code == 200
    return response.get_data(as_text=True)


def flashes(text: str) -> list[str]:
    return [html.unescape(m) for m in re.findall(r'<p class="flash flash-\w+"[^>]*>(.*?)</p>', text, re.S)]


def save_form(admin, fake, *, code=None, client=None, action="connect", **overrides):
    client_id, secret = client or fake.add_client()
    data = {
        "data_center": "us", "client_id": client_id, "client_secret": secret,
        "grant_token": code if code is not None else fake.new_grant_code(client_id),
        "account_id": ACCOUNT, "modules": ["contacts", "deals"], "action": action,
    }
    data.update(overrides)
    return admin.post("/admin/", data), (client_id, secret, data["grant_token"])


def audit_actions(app):
    return [(row["action"], row["detail"]) for row in audit.recent(rt_of(app), 50)]


def test_saving_a_good_grant_token_shows_connected_and_only_last_four(page_app, admin, fake_zoho, gateway_logs):
    response, (client_id, secret, code) = save_form(admin, fake_zoho)
    assert response.status_code == 302 and response.location == "/admin/"
    text = page_text(admin)
    assert any(m.startswith("connected to Zoho CRM (us,") for m in flashes(text))
    assert 'data-state="connected"' in text
    (refresh_token,) = fake_zoho.live_refresh_tokens()
    access_token = next(iter(fake_zoho.access_tokens))
    assert client_id[-4:] in text and refresh_token[-4:] in text
    for secret_value in (client_id, secret, code, refresh_token, access_token):
        assert secret_value not in text
        assert secret_value not in gateway_logs()
    assert "expires in 59 min" in text or "expires in 1 h" in text
    # The form never fills in a credential again, but keeps what is not one.
    assert f'value="{ACCOUNT}"' in text
    assert ("configure", f"data center us, account {ACCOUNT}, modules contacts, deals: connected") in audit_actions(page_app)


def test_a_used_grant_token_is_explained_and_the_earlier_connection_stays(page_app, admin, fake_zoho):
    client = fake_zoho.add_client()
    _, (_, _, code) = save_form(admin, fake_zoho, client=client)
    before = connection.status(rt_of(page_app))
    response, _ = save_form(admin, fake_zoho, client=client, code=code, account_id="5725767000000999999")
    assert response.status_code == 302
    text = page_text(admin)
    assert "invalid_code: the grant token has expired or was already used; make a new one" in flashes(text)
    after = connection.status(rt_of(page_app))
    assert after["state"] == "connected"
    assert after["refresh_token_last4"] == before["refresh_token_last4"] and after["account_id"] == ACCOUNT
    assert 'data-state="connected"' in text
    assert ("configure", "data center us, account 5725767000000999999, modules contacts, deals: refused") in audit_actions(page_app)


def test_an_incomplete_form_names_what_is_missing_and_echoes_no_credential(page_app, admin, fake_zoho):
    response, (client_id, secret, _) = save_form(admin, fake_zoho, code="", account_id="https://crm.zoho.com/x")
    assert response.status_code == 400
    text = response.get_data(as_text=True)
    message = flashes(text)[0]
    assert message.startswith("Nothing was saved:")
    assert "Enter a fresh grant token" in message and "Account ID is the long number" in message
    assert client_id not in text and secret not in text
    assert connection.state(rt_of(page_app)) == "not_configured"
    assert fake_zoho.calls["oauth.grant"] == 0


def test_account_and_modules_change_without_a_new_grant_token(page_app, admin, fake_zoho):
    save_form(admin, fake_zoho)
    response = admin.post("/admin/", {"action": "update", "data_center": "us", "account_id": "5725767000000777777",
                                      "modules": ["deals"]})
    assert response.status_code == 302
    assert "Zoho settings updated" in flashes(page_text(admin))
    status = connection.status(rt_of(page_app))
    assert status["account_id"] == "5725767000000777777" and status["modules"] == ["deals"]
    assert fake_zoho.calls["oauth.grant"] == 1


def test_disconnect_revokes_and_forgets(page_app, admin, fake_zoho):
    save_form(admin, fake_zoho)
    (refresh_token,) = fake_zoho.live_refresh_tokens()
    response = admin.post("/admin/disconnect", {})
    assert response.status_code == 302
    text = page_text(admin)
    assert "disconnected from Zoho; the refresh token was revoked" in flashes(text)
    assert 'data-state="not_configured"' in text
    assert refresh_token in fake_zoho.revoked
    assert ("disconnect", "disconnected") in audit_actions(page_app)


def test_webhook_set_up_help_shows_urls_header_secret_and_parameters(make_app):
    app = make_app(GATEWAY_PUBLIC_URL="https://gateway.example.com")
    admin = AdminSession(app, app.test_client())
    admin.login()
    text = page_text(admin)
    assert "https://gateway.example.com/webhooks/zoho/contacts" in text
    assert "https://gateway.example.com/webhooks/zoho/deals" in text
    assert "X-Webhook-Token" in text
    from gateway.inbound import secrets

    current = secrets.webhook_secrets(rt_of(app))["current"]
    # The secret is on the page for copying, inside a <details> "show" control (no JavaScript).
    assert re.search(r"<details class=\"secret\">\s*<summary>Show the webhook secret</summary>\s*"
                     r"<code class=\"copy\" id=\"webhook-secret\">" + re.escape(current) + "</code>", text)
    for parameter, merge_field in (("email", "Contacts › Email"), ("stage", "Deals › Stage"),
                                   ("modified_time", "Deals › Modified Time"), ("payment_status", "Paid / Unpaid")):
        assert f"<code>{parameter}</code>" in text and html.escape(merge_field) in text


def test_webhook_urls_follow_the_request_host_without_a_public_url(page_app):
    client, base = page_app.test_client(), "http://gw.internal:8000"
    AdminSession(page_app, client).set_password()
    token = csrf_token_from(client.get("/admin/login", base_url=base).get_data(as_text=True))
    client.post("/admin/login", base_url=base, data={"password": ADMIN_PASSWORD, "csrf_token": token})
    text = client.get("/admin/", base_url=base).get_data(as_text=True)
    assert "http://gw.internal:8000/webhooks/zoho/contacts" in text, re.findall(r"http[^<\"]*webhooks[^<\"]*", text)
    assert "http://gw.internal:8000/api/v1/events" in text


def test_rotating_the_webhook_secret_keeps_the_old_one_for_a_day(page_app, admin, gateway_logs):
    from gateway.inbound import secrets

    old = secrets.webhook_secrets(rt_of(page_app))["current"]
    response = admin.post("/admin/secrets/webhook/rotate", {})
    assert response.status_code == 302
    text = page_text(admin)
    assert any(m.startswith("New webhook secret made.") for m in flashes(text))
    now = secrets.webhook_secrets(rt_of(page_app))
    assert now["current"] != old and now["previous"] == old
    assert now["current"] in text and old in text
    assert "still accepted until" in text and "in 23 h 59 min" in text
    assert ("rotate webhook secret", "webhook secret rotated") in audit_actions(page_app)
    assert old not in gateway_logs() and now["current"] not in gateway_logs()
    assert "admin action=rotate webhook secret who=admin@127.0.0.1" in gateway_logs()


def test_notification_mode_needs_a_connection_first(page_app, admin):
    response = admin.post("/admin/notify", {"enabled": "on"})
    assert response.status_code == 302
    text = page_text(admin)
    assert any("Connect Zoho CRM first" in m for m in flashes(text))
    assert ("notification api", "notification API on: refused") in audit_actions(page_app)


def test_a_panel_that_fails_leaves_the_rest_of_the_page_working(page_app, admin, monkeypatch):
    from gateway.outbound import queue

    def broken(rt):
        raise RuntimeError("database went away")

    monkeypatch.setattr(queue, "status", broken)
    text = page_text(admin)
    assert "The push queue could not be read just now (RuntimeError)" in text
    assert 'data-state="not_configured"' in text  # the Zoho panel still answers
    assert "database went away" not in text


def test_the_page_has_no_inline_script_or_style(page_app, admin):
    for text in (page_text(admin), admin.client.get("/admin/login").get_data(as_text=True)):
        assert "<script" not in text and "<style" not in text
        assert not re.search(r"\sstyle=", text)
        assert not re.search(r"\son[a-z]+=", text)
        assert "javascript:" not in text


def test_the_stylesheet_is_served_from_our_origin(client):
    response = client.get("/static/admin.css")
    assert response.status_code == 200 and "text/css" in response.content_type


def test_time_words_for_people():
    assert panels.duration(45) == "45 s"
    assert panels.duration(12 * 60 + 5) == "12 min"
    assert panels.duration(3 * 3600 + 5 * 60) == "3 h 5 min"
    assert panels.duration(50 * 3600) == "2 d 2 h"
    assert panels.relative(1000 + 42 * 60, 1000) == "in 42 min"
    assert panels.relative(1000 - 300, 1000) == "5 min ago"
    assert panels.relative(None, 1000) == "—"
    assert panels.clock(0) == "1970-01-01 00:00:00 UTC"


def test_the_attention_list_says_what_needs_the_admin_first(page_app, admin, fake_zoho):
    text = page_text(admin)
    assert "Zoho is not connected yet: fill in the form to connect." in text
    save_form(admin, fake_zoho)
    text = page_text(admin)
    assert "All is well: connected to Zoho, nothing failed, nothing waiting." in text
    assert "Needs attention" not in text


def test_attention_puts_reauthorization_first_and_names_each_problem():
    page = panels.Page(
        connection=panels.Panel({"state": "needs_reauthorization"}),
        queue=panels.Panel({"paused": True, "paused_reason": "Zoho needs re-authorization", "dead": 2}),
        dead_jobs=panels.Panel([]), calls_today=panels.Panel(0), pushes_today=panels.Panel(0),
        inbox=panels.Panel(None, "The latest deliveries could not be read just now (OperationalError); the log has the details"),
        inbox_pending=panels.Panel(1), inbox_failed=panels.Panel(2),
        webhook_secrets=panels.Panel({}), webhook_urls=panels.Panel({}),
        events_secrets=panels.Panel({}), notify_enabled=panels.Panel(False), notify_channel=panels.Panel(None),
        audit=panels.Panel([]),
    )
    assert panels.attention(page) == [
        ("zoho", "Zoho needs re-authorization: pushes wait until you connect again."),
        ("queue", "Pushes are paused: Zoho needs re-authorization"),
        ("dead-jobs", "2 pushes failed for good: see the dead jobs."),
        ("inbound", "1 update from Zoho waiting for the OnPrintShop database."),
        ("deliveries", "2 updates from Zoho refused by OnPrintShop: see the latest deliveries."),
        ("status", "The latest deliveries could not be read just now (OperationalError); the log has the details"),
    ]


def test_a_revoked_refresh_token_shows_needs_reauthorization_with_the_way_to_fix_it(page_app, admin, fake_zoho):
    from gateway.zoho.errors import ReauthorizationNeeded

    save_form(admin, fake_zoho)
    rt = rt_of(page_app)
    (refresh_token,) = fake_zoho.live_refresh_tokens()
    import requests

    # Revoked elsewhere (e.g. in Zoho's API console): Zoho answers invalid_code on the next refresh.
    assert requests.post(f"{fake_zoho.url}/oauth/v2/token/revoke", params={"token": refresh_token}, timeout=10).ok
    with pytest.raises(ReauthorizationNeeded):
        rt.tokens.invalidate(rt.tokens.access_token())
    text = page_text(admin)
    assert 'data-state="needs_reauthorization"' in text
    assert "Zoho needs re-authorization: pushes wait until you connect again." in text
    assert '<a class="button" href="#configure">Re-authorize</a>' in text
    # A new grant token through the same form fixes it.
    save_form(admin, fake_zoho)
    assert 'data-state="connected"' in page_text(admin)


def test_connect_through_zoho_saves_the_form_and_offers_the_link(page_app, admin, fake_zoho):
    response, (client_id, secret, _) = save_form(admin, fake_zoho, code="", action="redirect")
    assert response.status_code == 302 and response.location == "/admin/#configure"
    text = page_text(admin)
    assert "Saved. Now press “Continue at Zoho” to allow access there." in flashes(text)
    assert '<a class="button" id="continue-at-zoho" href="/admin/zoho/connect">Continue at Zoho</a>' in text
    assert client_id not in text and secret not in text
    assert connection.status(rt_of(page_app))["pending"]["account_id"] == ACCOUNT
    assert connection.state(rt_of(page_app)) == "not_configured"  # nothing changes until Zoho answers
    assert fake_zoho.calls["oauth.grant"] == 0


def test_notification_mode_switches_on_and_off_against_zoho(page_app, admin, fake_zoho):
    save_form(admin, fake_zoho)
    admin.post("/admin/notify", {"enabled": "on"})
    text = page_text(admin)
    assert any(m.startswith("Notification API mode is on: Zoho posts changes to http://localhost/webhooks/zoho/notify")
               for m in flashes(text))
    assert "<dt>Notification API</dt>\n      <dd>on, channel renews before" in text
    assert '<input type="hidden" name="enabled" value="off">' in text
    admin.post("/admin/notify", {"enabled": "off"})
    text = page_text(admin)
    assert any(m.startswith("Notification API mode is off") for m in flashes(text))
    assert [a for a, _ in audit_actions(page_app)][:2] == ["notification api", "notification api"]


def test_rotating_the_events_secret_shows_the_new_one(page_app, admin):
    from gateway.outbound import events

    old = events.events_secret(rt_of(page_app))
    assert old in page_text(admin)
    admin.post("/admin/secrets/events/rotate", {})
    text = page_text(admin)
    assert any(m.startswith("New events secret made. The previous one keeps working for 24 hours") for m in flashes(text))
    new = events.events_secret(rt_of(page_app))
    assert new != old and new.startswith("whsec_")
    assert f'<code class="copy" id="events-secret">{new}</code>' in text
    # The replaced one is still accepted for 24 hours, so the page shows it and until when.
    assert f'<code class="copy" id="events-secret-previous">{old}</code>' in text
    assert re.search(r"Show the previous events secret \(still accepted until [^,]+ UTC, in 2[34] h( \d+ min)?\)", text), text
    assert ("rotate events secret", "events secret rotated") in audit_actions(page_app)
