"""The simulator exists only in development: in production its URLs answer 404, logged in or not,
the status page does not offer it, and no simulator is made at all."""
from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

from tests.conftest import ADMIN_PASSWORD, AdminSession, csrf_token_from, logged_in

SIMULATOR_URLS = [
    ("POST", "/zoho-simulator/oauth/v2/token"),
    ("GET", "/zoho-simulator/oauth/v2/auth"),
    ("POST", "/zoho-simulator/crm/v8/Deals/upsert"),
    ("GET", "/zoho-simulator/crm/v8/Contacts"),
    ("POST", "/zoho-simulator/crm/v8/actions/watch"),
    ("GET", "/admin/simulator/"),
    ("POST", "/admin/simulator/connect"),
    ("POST", "/admin/simulator/deals/5725767000000000002"),
    ("POST", "/admin/simulator/contacts/5725767000000000002"),
]
ORIGIN = "https://gateway.example.com"


@pytest.fixture
def production(make_app, tmp_path):
    return make_app(GATEWAY_ENV="production", SECRET_KEY="a production secret key for the tests only",
                    GATEWAY_FERNET_KEYS=Fernet.generate_key().decode(),
                    DATABASE_URL=f"sqlite:///{tmp_path}/prod-state.db", OPS_DATABASE_URL=f"sqlite:///{tmp_path}/prod-ops.db")


def production_admin(app):
    """A client logged in over https (production's session cookie is Secure), and a form token."""
    admin = AdminSession(app, app.test_client())
    admin.set_password()
    login = admin.client.get("/admin/login", base_url=ORIGIN)
    admin.client.post("/admin/login", base_url=ORIGIN, headers={"Referer": ORIGIN + "/admin/login"},
                      data={"password": ADMIN_PASSWORD, "csrf_token": csrf_token_from(login.get_data(as_text=True))})
    page = admin.client.get("/admin/", base_url=ORIGIN)
    assert page.status_code == 200
    return admin, page.get_data(as_text=True)


def test_in_production_the_simulator_urls_answer_404_logged_in_or_not(production):
    client = production.test_client()
    assert [client.open(path, method=method, base_url=ORIGIN).status_code for method, path in SIMULATOR_URLS] == \
        [404] * len(SIMULATOR_URLS)
    admin, text = production_admin(production)
    form = {"csrf_token": csrf_token_from(text), "stage": "Shipped", "phone": "1"}
    answers = [admin.client.open(path, method=method, base_url=ORIGIN, data=form, headers={"Referer": ORIGIN + "/admin/"})
               for method, path in SIMULATOR_URLS]
    assert [a.status_code for a in answers] == [404] * len(SIMULATOR_URLS)
    assert "zoho_simulator" not in production.extensions


def test_in_production_the_status_page_does_not_offer_the_simulator(production):
    _admin, text = production_admin(production)
    assert "Connect to Zoho" in text
    assert "simulated Zoho" not in text and "Simulated Zoho" not in text and "/admin/simulator" not in text


def test_in_development_the_status_page_offers_it_next_to_the_connect_form(make_app):
    admin = logged_in(make_app())
    text = admin.client.get("/admin/").get_data(as_text=True)
    connect_form = text.index('<section id="configure"')
    offer = text.index("Try it with the simulated Zoho</button>")
    assert connect_form < offer < text.index('<label for="data_center">')
    assert 'action="/admin/simulator/connect"' in text and 'href="/admin/simulator/"' in text
