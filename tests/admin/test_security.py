"""Security of the admin pages on the wire: headers everywhere, production cookies and HSTS,
and the app behind one proxy hop (Heroku's router) logging in and saving with CSRF intact."""
from __future__ import annotations

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet

from gateway.state import tables
from gateway import audit
from tests.conftest import ADMIN_PASSWORD, AdminSession, csrf_token_from

ORIGIN = "https://gateway.example.com"


@pytest.fixture
def production_app(make_app, tmp_path):
    def build(**extra):
        return make_app(
            GATEWAY_ENV="production",
            SECRET_KEY="a production secret key for the tests only",
            GATEWAY_FERNET_KEYS=Fernet.generate_key().decode(),
            DATABASE_URL=f"sqlite:///{tmp_path}/prod-state.db",
            OPS_DATABASE_URL=f"sqlite:///{tmp_path}/prod-ops.db",
            **extra,
        )

    return build


def test_security_headers_on_every_admin_answer(client, admin):
    pages = [client.get("/admin/login"), client.get("/admin/")]
    admin.login()
    pages += [client.get("/admin/"), admin.post("/admin/jobs/retry-all", {}), client.post("/admin/disconnect")]
    for response in pages:
        csp = response.headers["Content-Security-Policy"]
        assert "default-src 'self'" in csp and "script-src 'self'" in csp and "'unsafe-inline'" not in csp
        assert "frame-ancestors 'none'" in csp
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "same-origin"
        assert response.headers["Cache-Control"] == "no-store"
        assert "Strict-Transport-Security" not in response.headers  # development: plain http


def test_production_sends_hsts_and_a_secure_session_cookie(production_app):
    app = production_app()
    client = app.test_client()
    admin = AdminSession(app, client)
    login_page = client.get("/admin/login", base_url=ORIGIN)
    assert login_page.headers["Strict-Transport-Security"].startswith("max-age=31536000")
    admin.set_password()
    response = client.post("/admin/login", base_url=ORIGIN, headers={"Referer": ORIGIN + "/admin/login"},
                           data={"password": ADMIN_PASSWORD, "csrf_token": csrf_token_from(login_page.get_data(as_text=True))})
    assert response.status_code == 302
    cookie = response.headers["Set-Cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_behind_one_proxy_hop_login_and_a_save_keep_csrf_working(production_app, fake_zoho):
    app = production_app(GATEWAY_PROXY_HOPS=1, ZOHO_ACCOUNTS_URL=fake_zoho.url, ZOHO_API_URL=fake_zoho.url)
    client = app.test_client()
    # What Heroku's router does: plain http to the dyno, the original scheme and address in headers.
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.7", "X-Forwarded-Host": "gateway.example.com"}

    def get(path):
        return client.get(path, base_url="http://10.1.2.3:5000", headers=forwarded)

    def post(path, data, referer=ORIGIN + "/admin/"):
        headers = dict(forwarded)
        if referer:
            headers["Referer"] = referer
        return client.post(path, base_url="http://10.1.2.3:5000", headers=headers, data=data)

    AdminSession(app, client).set_password()
    login_page = get("/admin/login")
    token = csrf_token_from(login_page.get_data(as_text=True))
    # flask-wtf checks the referrer on HTTPS: a missing one is refused, our own origin is fine.
    refused = post("/admin/login", {"password": ADMIN_PASSWORD, "csrf_token": token}, referer=None)
    assert refused.status_code == 400 and "referrer header is missing" in refused.get_data(as_text=True)
    assert post("/admin/login", {"password": ADMIN_PASSWORD, "csrf_token": token},
                referer="https://evil.example/admin/login").status_code == 400
    assert post("/admin/login", {"password": "wrong", "csrf_token": token}, referer=ORIGIN + "/admin/login").status_code == 401
    response = post("/admin/login", {"password": ADMIN_PASSWORD, "csrf_token": token}, referer=ORIGIN + "/admin/login")
    assert response.status_code == 302 and response.location == "/admin/"
    assert "Secure" in response.headers["Set-Cookie"]

    page = get("/admin/")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert "https://gateway.example.com/webhooks/zoho/contacts" in text  # URLs as the world sees them

    client_id, secret = fake_zoho.add_client()
    response = post("/admin/", {
        "csrf_token": csrf_token_from(text), "action": "connect", "data_center": "us", "client_id": client_id,
        "client_secret": secret, "grant_token": fake_zoho.new_grant_code(client_id),
        "account_id": "5725767000000412345", "modules": ["contacts", "deals"],
    })
    assert response.status_code == 302 and response.location == "/admin/"
    assert 'data-state="connected"' in get("/admin/").get_data(as_text=True)
    # The audit log and the login throttle see the client's address, not the router's.
    assert audit.recent(app.extensions["gateway"], 5)[0]["who"] == "admin@203.0.113.7"
    with app.extensions["gateway"].store.engine.connect() as conn:
        addresses = conn.execute(sa.select(tables.login_failures_table.c.address)).scalars().all()
    assert addresses == ["203.0.113.7"]  # the one wrong password; the refused posts never reached the check
