"""The redirect flow: /admin/zoho/connect → Zoho's consent page → /admin/zoho/callback, with the
state checked once and Zoho's `location` / `accounts-server` honoured."""
from __future__ import annotations

import time
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests

from gateway.zoho import connect, connection
from tests.conftest import AdminSession

ACCOUNT = "5725767000000412345"


@pytest.fixture
def setup(make_app, zoho_settings, fake_zoho, state_db_url):
    app = make_app(DATABASE_URL=state_db_url, **zoho_settings)
    client = app.test_client()
    AdminSession(app, client).login()
    return app, client


def flashes(client):
    with client.session_transaction() as sess:
        return [message for _category, message in sess.get("_flashes", [])]


def start(client, fake):
    """The admin's browser: the gateway sends it to Zoho, Zoho approves and sends it back."""
    to_zoho = client.get("/admin/zoho/connect")
    assert to_zoho.status_code == 302
    consent = requests.get(to_zoho.headers["Location"], allow_redirects=False, timeout=5)
    assert consent.status_code == 302, consent.text
    back = urlsplit(consent.headers["Location"])
    return to_zoho.headers["Location"], back


def test_connect_through_zoho_in_another_data_center(setup, fake_zoho):
    app, client = setup
    rt = app.extensions["gateway"]
    client_id, secret = fake_zoho.add_client(dc="eu")
    fake_zoho.auth_location = "eu"  # the Zoho user lives in the EU data center
    saved = connect.save_pending(rt, data_center="us", client_id=client_id, client_secret=secret,
                                    account_id=ACCOUNT, modules=["contacts"])
    assert saved.ok, saved.message
    auth_url, back = start(client, fake_zoho)
    query = parse_qs(urlsplit(auth_url).query)
    assert urlsplit(auth_url).path == "/oauth/v2/auth"
    assert {k: v[0] for k, v in query.items() if k != "state"} == {
        "scope": "ZohoCRM.modules.ALL,ZohoCRM.notifications.ALL", "client_id": client_id, "response_type": "code", "access_type": "offline",
        "prompt": "consent", "redirect_uri": "http://localhost/admin/zoho/callback"}
    assert len(query["state"][0]) >= 32
    assert back.path == "/admin/zoho/callback"
    assert parse_qs(back.query)["accounts-server"] == [f"{fake_zoho.url}/eu"]

    done = client.get(back.path + "?" + back.query)
    assert done.status_code == 302 and done.headers["Location"].endswith("/admin/")
    (message,) = flashes(client)
    assert message.startswith(f"connected to Zoho CRM (eu, {fake_zoho.url})")
    assert ("POST", "/eu/oauth/v2/token") in fake_zoho.requests  # sent to the server Zoho named
    status = connection.status(rt)
    assert status["state"] == "connected" and status["data_center"] == "eu"
    assert status["accounts_url"] == f"{fake_zoho.url}/eu" and status["modules"] == ["contacts"]
    assert status["pending"] is None
    assert status["redirect_uri"] == "http://localhost/admin/zoho/callback"

    # Later refreshes go to the same accounts server (the EU client is unknown at the US one).
    info = connection.load(rt.store)
    connection.update_fields(rt.store, info["generation"], {"access_expires_at": time.time() - 1})
    assert rt.tokens.access_token() in fake_zoho.access_tokens
    assert fake_zoho.requests.count(("POST", "/eu/oauth/v2/token")) == 2

    replay = client.get(back.path + "?" + back.query)  # the state was used up
    assert replay.status_code == 302
    assert "state check failed" in flashes(client)[-1]
    assert fake_zoho.calls["oauth.grant"] == 1


def test_public_url_decides_the_redirect_uri_and_reauthorizes_the_stored_client(make_app, zoho_settings, fake_zoho):
    app = make_app(GATEWAY_PUBLIC_URL="https://gw.example.com/", **zoho_settings)
    client = app.test_client()
    AdminSession(app, client).login()
    rt = app.extensions["gateway"]
    client_id, secret = fake_zoho.add_client()
    assert connect.configure(rt, data_center="us", client_id=client_id, client_secret=secret,
                                grant_token=fake_zoho.new_grant_code(client_id), account_id=ACCOUNT).ok
    first = fake_zoho.live_refresh_tokens()[0]
    auth_url, back = start(client, fake_zoho)  # no pending form: the stored connection's client
    assert parse_qs(urlsplit(auth_url).query)["redirect_uri"] == ["https://gw.example.com/admin/zoho/callback"]
    assert parse_qs(urlsplit(auth_url).query)["client_id"] == [client_id]
    client.get(back.path + "?" + back.query)
    assert flashes(client)[-1].startswith("connected to Zoho CRM (us")
    assert fake_zoho.revoked == [first]


def test_a_wrong_state_or_a_foreign_accounts_server_changes_nothing(setup, fake_zoho):
    app, client = setup
    rt = app.extensions["gateway"]
    client_id, secret = fake_zoho.add_client()
    assert connect.save_pending(rt, data_center="us", client_id=client_id, client_secret=secret, account_id=ACCOUNT).ok
    _, back = start(client, fake_zoho)
    query = parse_qs(back.query)
    forged = client.get(f"/admin/zoho/callback?code={query['code'][0]}&state=guessed&location=us")
    assert forged.status_code == 302 and "state check failed" in flashes(client)[-1]

    for server in ("https://accounts.evil.example", "https://[::1"):  # the second is not even a URL to urlsplit
        _, back = start(client, fake_zoho)
        query = {k: v[0] for k, v in parse_qs(back.query).items()}
        query["accounts-server"] = server
        refused = client.get("/admin/zoho/callback?" + urlencode(query))
        assert refused.status_code == 400, server
        assert "is not a Zoho accounts server (or not a URL)" in refused.get_data(as_text=True)
        assert fake_zoho.calls["oauth.grant"] == 0
        assert connection.state(rt) == "not_configured"
        assert connection.status(rt)["pending"]["client_id_last4"] == "…" + client_id[-4:]  # kept for another try

    denied = client.get("/admin/zoho/connect")
    with client.session_transaction() as sess:
        state = sess["zoho_oauth"]["state"]
    assert denied.status_code == 302
    client.get(f"/admin/zoho/callback?error=access_denied&state={state}")
    assert flashes(client)[-1] == "Zoho did not grant access (access_denied); nothing was changed."


def test_connect_needs_saved_settings_and_a_login(make_app, zoho_settings):
    app = make_app(**zoho_settings)
    anonymous = app.test_client()
    for path in ("/admin/zoho/connect", "/admin/zoho/callback?code=x&state=y"):
        response = anonymous.get(path)
        assert response.status_code == 302 and "/admin/login" in response.headers["Location"]
    client = app.test_client()
    AdminSession(app, client).login()
    response = client.get("/admin/zoho/connect")
    assert response.status_code == 302 and response.headers["Location"].endswith("/admin/")
    assert flashes(client) == ["Save the data center, Client ID, Client Secret and Account ID first, then connect through Zoho."]
