"""The first five minutes without a Zoho account, on a development gateway served over HTTP:
"Try it with the simulated Zoho" connects to the simulator the same server serves, the demo
customers and orders become Contacts and Deals there, and a salesperson's edit on the Simulated
Zoho page comes back through the workflow webhook into the store."""
from __future__ import annotations

import html
import re

import pytest

from gateway.ops.database import demo
from gateway.outbound import worker
from gateway.zoho import connection
from tests.conftest import logged_in, rt_of, serving

ACCOUNT = "5725767000000412345"


@pytest.fixture
def gateway(make_app, fake_zoho):
    """A development gateway with the demo store, served at GATEWAY_PUBLIC_URL; `fake_zoho` stands
    for a real Zoho account (its accounts server is ZOHO_ACCOUNTS_URL)."""
    with serving(lambda url: make_app(GATEWAY_PUBLIC_URL=url, ZOHO_ACCOUNTS_URL=fake_zoho.url)) as (_url, app):
        demo.create_if_absent(rt_of(app).ops)
        yield app


def page(admin, path="/admin/") -> str:
    response = admin.client.get(path)
    assert response.status_code == 200
    return response.get_data(as_text=True)


def flashes(text: str) -> list[str]:
    return [html.unescape(m) for m in re.findall(r'<p class="flash flash-\w+"[^>]*>(.*?)</p>', text, re.S)]


def rows(text: str, table: str) -> list[str]:
    """The rows of one table of the page, as their visible text."""
    body = re.search(rf'<section class="block" id="{table}">(.*?)</section>', text, re.S).group(1)
    return [" ".join(html.unescape(re.sub(r"<[^>]+>", " ", row)).split())
            for row in re.findall(r"<tr data-id=[^>]*>(.*?)</tr>", body, re.S)]


def deal_id(text: str, name: str) -> str:
    return re.search(rf'<tr data-id="(\d+)">\s*<td>{re.escape(name)}</td>', text).group(1)


def test_try_it_connects_pushes_and_brings_a_stage_change_back(gateway, fake_zoho):
    admin = logged_in(gateway)
    assert "Try it with the simulated Zoho" in page(admin)
    admin.post("/admin/simulator/connect", {})
    text = page(admin)
    assert flashes(text) == ["Connected to the simulated Zoho. The store's 4 customers and 6 orders are queued for it "
                             "(as `push customers --all --force` and `push orders --all --force` would): within a minute they are "
                             "Contacts and Deals on the Simulated Zoho page."]
    assert 'data-state="connected"' in text
    status = connection.status(rt_of(gateway))
    assert status["accounts_url"] == status["api_domain"] == rt_of(gateway).config["GATEWAY_PUBLIC_URL"] + "/zoho-simulator"

    worker.drain(rt_of(gateway))  # what the background worker of `make run` does within seconds
    text = page(admin, "/admin/simulator/")
    assert 'data-state="simulator"' in text
    contacts = rows(text, "contacts")
    assert len(contacts) == 4 and any("Ada Lovelace ada@example.com" in r and "OnPrintShop customers" in r for r in contacts)
    deals = rows(text, "deals")
    assert len(deals) == 6 and any(r.startswith("OPS Order #1 ") and "149.90" in r and "Ada Lovelace" in r for r in deals)

    # A salesperson moves order 1 on: Zoho calls the gateway's Deals webhook, the store follows.
    admin.post(f"/admin/simulator/deals/{deal_id(text, 'OPS Order #1')}", {"stage": "Shipped"}, page="/admin/simulator/")
    text = page(admin, "/admin/simulator/")
    [said] = flashes(text)
    assert said.startswith("OPS Order #1: Stage is now Shipped. Zoho called the gateway's webhook (POST "
                           f"{rt_of(gateway).config['GATEWAY_PUBLIC_URL']}/webhooks/zoho/deals): HTTP 200")
    assert '"applied"' in said
    assert any(r.startswith("#1 Ada Lovelace Shipped Unpaid") for r in rows(text, "store"))
    status_page = page(admin)
    assert re.search(r"<td>Deals</td>\s*<td>\d+</td>\s*<td>1</td>\s*<td><span class=\"outcome outcome-applied\">applied</span>",
                     status_page)

    # And a phone number, through the Contacts webhook.
    ada = re.search(r'<tr data-id="(\d+)">\s*<td>Ada Lovelace</td>', text).group(1)
    admin.post(f"/admin/simulator/contacts/{ada}", {"phone": "+44 20 7946 0999"}, page="/admin/simulator/")
    text = page(admin, "/admin/simulator/")
    assert "HTTP 200" in flashes(text)[0]
    assert any(r.startswith("1 Ada Lovelace ada@example.com +44 20 7946 0999") for r in rows(text, "store"))


def test_the_notification_api_works_against_the_simulator(gateway):
    admin = logged_in(gateway)
    admin.post("/admin/simulator/connect", {})
    worker.drain(rt_of(gateway))
    admin.post("/admin/notify", {"enabled": "on"})
    assert flashes(page(admin))[0].startswith("Notification API mode is on")
    sim = gateway.extensions["zoho_simulator"]
    deal = sim.records_of("Deals")[0]
    admin.post(f"/admin/simulator/deals/{deal['id']}", {"stage": "Printing"}, page="/admin/simulator/")
    [(url, body, status)] = sim.notifications_sent
    assert url == rt_of(gateway).config["GATEWAY_PUBLIC_URL"] + "/webhooks/zoho/notify"
    assert body["ids"] == [deal["id"]] and body["module"] == "Deals" and 200 <= status < 300


def test_connecting_a_real_zoho_replaces_the_simulator(gateway, fake_zoho):
    admin = logged_in(gateway)
    admin.post("/admin/simulator/connect", {})
    sim = gateway.extensions["zoho_simulator"]
    client_id, secret = fake_zoho.add_client()
    admin.post("/admin/", {"data_center": "us", "client_id": client_id, "client_secret": secret, "account_id": ACCOUNT,
                           "grant_token": fake_zoho.new_grant_code(client_id), "modules": ["contacts", "deals"],
                           "action": "connect"})
    text = page(admin)
    assert flashes(text)[0].startswith(f"connected to Zoho CRM (us, {fake_zoho.url})")
    assert "the previous refresh token was revoked at Zoho" in flashes(text)[0]
    assert len(sim.revoked) == 1  # the simulator's refresh token, revoked at the simulator
    assert 'data-state="zoho"' in page(admin, "/admin/simulator/")
    assert connection.status(rt_of(gateway))["api_domain"] == fake_zoho.url


def test_the_simulated_zoho_page_needs_a_login_and_its_forms_a_csrf_token(gateway):
    client = gateway.test_client()
    assert client.get("/admin/simulator/").headers["Location"].startswith("/admin/login")
    assert client.post("/admin/simulator/connect").status_code == 400  # no form token, no session
    admin = logged_in(gateway)
    refused = admin.client.post("/admin/simulator/connect", data={})
    assert refused.status_code == 400 and "Form expired" in refused.get_data(as_text=True)
    assert connection.load(rt_of(gateway).store) is None
