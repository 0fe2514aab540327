"""The account-takeover rules hold through OnPrintShop's API as through its database: a Contact's
e-mail reaches the customer's login only with GATEWAY_WRITE_BACK_EMAIL=1, and an `ops_id` links a
Contact only when its e-mail is the customer's."""
from __future__ import annotations

from gateway.inbound import reports
from gateway.sync.links import ops_id_for
from tests.hosted.conftest import zoho_time


def _pushed_customer(gw, email="grace@example.com") -> tuple[int, str]:
    """A customer pushed to Zoho (so its Contact is linked), and that Contact's id."""
    customer = gw.ops.store.add_customer("Grace", "Hopper", email)
    gw.push_all("customers")
    return customer, gw.contact(email)["id"]


def test_by_default_an_email_from_zoho_is_not_sent_to_onprintshop_and_the_delivery_says_so(hosted):
    gw, ops = hosted, hosted.ops
    customer, contact = _pushed_customer(gw)
    answer = gw.post("contacts", {"id": contact, "email": "attacker@example.net", "last_name": "Hopper-Murray",
                                  "modified_time": zoho_time(30)})
    assert answer.status_code == 200 and answer.get_json() == {"status": "applied"}
    assert ops.store.customers[customer]["customers_email_address"] == "grace@example.com"  # the login stays
    assert ops.store.customers[customer]["customers_last_name"] == "Hopper-Murray"
    assert all("email" not in fields for _, fields in ops.set_customer_calls)
    reason = reports.recent(gw.rt, limit=1)[0]["reason"]
    assert "e-mail was not written" in reason and "GATEWAY_WRITE_BACK_EMAIL=0" in reason


def test_with_write_back_on_the_email_is_sent(make_hosted, fake_ops):
    gw = make_hosted(GATEWAY_WRITE_BACK_EMAIL=True)
    customer, contact = _pushed_customer(gw)
    answer = gw.post("contacts", {"id": contact, "email": "grace.hopper@example.com", "modified_time": zoho_time(30)})
    assert answer.get_json() == {"status": "applied"}
    assert fake_ops.store.customers[customer]["customers_email_address"] == "grace.hopper@example.com"
    assert "not written" not in reports.recent(gw.rt, limit=1)[0]["reason"]


def test_an_ops_id_links_a_contact_only_when_its_email_is_the_customers(make_hosted, fake_ops):
    gw = make_hosted(GATEWAY_WRITE_BACK_EMAIL=True)
    ada = fake_ops.store.add_customer("Ada", "Lovelace", "ada@example.com")  # never pushed: no Contact is linked to her
    fake_ops.store.add_order(ada)  # the API finds a customer by id only through an order (or by her own e-mail)
    answer = gw.post("contacts", {"id": "7003", "ops_id": str(ada), "email": "mallory@example.net", "first_name": "M",
                                  "modified_time": zoho_time(10)})
    assert answer.status_code == 409
    body = answer.get_json()
    assert body["parameter"] == "ops_id" and "mallory@example.net" in body["error"] and "not the customer's" in body["error"]
    answer = gw.post("contacts", {"id": "7003", "ops_id": str(ada), "first_name": "M", "modified_time": zoho_time(11)})
    assert answer.status_code == 409 and "no e-mail" in answer.get_json()["error"]
    assert fake_ops.set_customer_calls == []  # nothing was written to OnPrintShop
    assert fake_ops.store.customers[ada]["customers_first_name"] == "Ada"
    with gw.rt.store.engine.connect() as conn:
        assert ops_id_for(conn, "Contacts", "7003") is None

    answer = gw.post("contacts", {"id": "7003", "ops_id": str(ada), "email": "Ada@Example.com", "first_name": "Ada K.",
                                  "modified_time": zoho_time(12)})
    assert answer.get_json() == {"status": "applied"}
    assert fake_ops.store.customers[ada]["customers_first_name"] == "Ada K."
    with gw.rt.store.engine.connect() as conn:
        assert ops_id_for(conn, "Contacts", "7003") == ada


def test_an_email_that_belongs_to_another_customer_is_409_and_nothing_is_written(make_hosted, fake_ops):
    gw = make_hosted(GATEWAY_WRITE_BACK_EMAIL=True)
    fake_ops.store.add_customer("Ada", "Lovelace", "ada@example.com")
    customer, contact = _pushed_customer(gw)
    answer = gw.post("contacts", {"id": contact, "email": "ADA@example.com", "modified_time": zoho_time(30)})
    assert answer.status_code == 409 and answer.get_json()["parameter"] == "email"
    assert "already belongs to another OnPrintShop customer" in answer.get_json()["error"]
    assert fake_ops.set_customer_calls == [] and fake_ops.store.customers[customer]["customers_email_address"] == "grace@example.com"


def test_an_ops_id_linked_to_another_contact_is_409(hosted):
    gw, ops = hosted, hosted.ops
    customer, contact = _pushed_customer(gw)
    answer = gw.post("contacts", {"id": "7999", "ops_id": str(customer), "email": "grace@example.com",
                                  "first_name": "Mallory", "modified_time": zoho_time(30)})
    assert answer.status_code == 409 and answer.get_json()["parameter"] == "ops_id"
    assert contact in answer.get_json()["error"]
    assert ops.set_customer_calls == [] and ops.store.customers[customer]["customers_first_name"] == "Grace"
