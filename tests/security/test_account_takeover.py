"""A Zoho user cannot take over a store account: a Contact's e-mail is written to the customer's
login only when GATEWAY_WRITE_BACK_EMAIL=1, and an `ops_id` links a Contact only when its e-mail is
the customer's."""
from __future__ import annotations

import time

from gateway.inbound import reports
from gateway.sync.links import ops_id_for
from tests.conftest import logged_in
from tests.inbound.conftest import Gateway

BASE = int(time.time()) - 3600


def zt(offset: int = 0) -> str:
    return str((BASE + offset) * 1000)


def test_by_default_an_email_from_zoho_is_not_written_and_the_delivery_says_so(make_app, ops_db_url):
    gw = Gateway(make_app(OPS_DATABASE_URL=ops_db_url))
    assert gw.post("contacts", {"id": "7001", "email": "grace@example.com", "modified_time": zt()}).status_code == 200
    r = gw.post("contacts", {"id": "7001", "email": "attacker@example.net", "last_name": "Hopper-Murray",
                             "modified_time": zt(10)})
    assert r.status_code == 200 and r.get_json() == {"status": "applied"}
    customer = gw.customer(2)
    assert customer["customers_email_address"] == "grace@example.com"  # the login stays
    assert customer["customers_lastname"] == "Hopper-Murray"            # the rest of the delivery applies
    reason = reports.recent(gw.rt)[0]["reason"]
    assert "e-mail was not written" in reason and "GATEWAY_WRITE_BACK_EMAIL=0" in reason


def test_with_write_back_on_the_email_is_written(make_app, ops_db_url):
    gw = Gateway(make_app(OPS_DATABASE_URL=ops_db_url, GATEWAY_WRITE_BACK_EMAIL=True))
    assert gw.post("contacts", {"id": "7002", "email": "grace@example.com", "modified_time": zt()}).status_code == 200
    r = gw.post("contacts", {"id": "7002", "email": "grace.hopper@example.com", "modified_time": zt(10)})
    assert r.get_json() == {"status": "applied"}
    assert gw.customer(2)["customers_email_address"] == "grace.hopper@example.com"
    assert "not written" not in reports.recent(gw.rt)[0]["reason"]


def test_an_ops_id_links_a_contact_only_when_its_email_is_the_customers(make_app, ops_db_url):
    gw = Gateway(make_app(OPS_DATABASE_URL=ops_db_url, GATEWAY_WRITE_BACK_EMAIL=True))
    before = gw.snapshot()
    r = gw.post("contacts", {"id": "7003", "ops_id": "1", "email": "mallory@example.net", "first_name": "M",
                             "modified_time": zt()})
    assert r.status_code == 409
    body = r.get_json()
    assert body["parameter"] == "ops_id" and "mallory@example.net" in body["error"] and "not the customer's" in body["error"]
    r = gw.post("contacts", {"id": "7003", "ops_id": "1", "first_name": "M", "modified_time": zt(1)})
    assert r.status_code == 409 and "no e-mail" in r.get_json()["error"]
    assert gw.snapshot() == before
    with gw.rt.store.engine.connect() as conn:
        assert ops_id_for(conn, "Contacts", "7003") is None
    r = gw.post("contacts", {"id": "7003", "ops_id": "1", "email": "Ada@Example.com", "first_name": "Ada K.",
                             "modified_time": zt(2)})
    assert r.get_json() == {"status": "applied"} and gw.customer(1)["customers_firstname"] == "Ada K."
    with gw.rt.store.engine.connect() as conn:
        assert ops_id_for(conn, "Contacts", "7003") == 1


def test_the_page_explains_the_email_risk_and_the_setting(make_app):
    app = make_app()
    page = logged_in(app).client.get("/admin/").get_data(as_text=True)
    assert "GATEWAY_WRITE_BACK_EMAIL is off" in page and "their OnPrintShop login" in page
    app_on = make_app(GATEWAY_WRITE_BACK_EMAIL=True, INSTANCE_PATH=app.instance_path + "-on")
    page_on = logged_in(app_on).client.get("/admin/").get_data(as_text=True)
    assert "GATEWAY_WRITE_BACK_EMAIL=1: e-mails from Zoho ARE written" in page_on
