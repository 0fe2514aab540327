"""Pushing to Zoho through the real worker, against each state store and the fake Zoho."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
import requests
import sqlalchemy as sa

from gateway.sync import links
from gateway.ops import Customer, Order
from gateway.outbound import batch, push, queue
from gateway.state import tables
from gateway.zoho import gate as zoho_gate


def linked(gw, module, ops_id):
    with gw.rt.store.engine.connect() as conn:
        return links.zoho_id_for(conn, module, ops_id)


def test_250_changed_customers_go_out_in_3_upsert_calls_linked_to_the_account(gw):
    ids = gw.add_customers(250)
    queue.enqueue(gw.rt, "Contacts", ids)
    gw.drain()

    assert gw.fake.upsert_calls["Contacts"] == 3
    assert [len(body["data"]) for _, body in gw.fake.upsert_bodies] == [100, 100, 50]
    for _module, body in gw.fake.upsert_bodies:
        assert body["trigger"] == [] and body["duplicate_check_fields"] == ["Email"]
    stored = {r["Email"]: r for r in gw.fake.records["Contacts"].values()}
    assert len(stored) == 250
    first = stored[f"c{ids[0]}@example.com"]
    assert first["Account_Name"] == {"id": gw.account_id}
    assert first["Last_Name"] == f"Last{ids[0]}"
    assert linked(gw, "Contacts", ids[0]) == first["id"]
    status = queue.status(gw.rt)
    assert (status["pending"], status["done"], status["dead"]) == (0, 250, 0)
    assert zoho_gate.count_last_day(gw.rt.store, "pushes") == 250
    assert zoho_gate.count_last_day(gw.rt.store, "calls") == 3


def test_an_unchanged_record_is_not_sent_again_and_a_changed_one_updates_the_same_contact(gw):
    ids = gw.add_customers(2)
    queue.enqueue(gw.rt, "Contacts", ids)
    gw.drain()
    assert gw.fake.upsert_calls["Contacts"] == 1

    queue.enqueue(gw.rt, "Contacts", ids)  # nothing changed
    gw.drain()
    assert gw.fake.upsert_calls["Contacts"] == 1

    gw.update_customer(ids[0], customers_email_address="new-address@example.com")
    queue.enqueue(gw.rt, "Contacts", ids)
    gw.drain()
    assert gw.fake.upsert_calls["Contacts"] == 2
    module, body = gw.fake.upsert_bodies[-1]
    assert [r["Email"] for r in body["data"]] == ["new-address@example.com"]
    assert body["data"][0]["id"] == linked(gw, "Contacts", ids[0])  # by its Zoho id, not a second Contact
    assert len(gw.fake.records["Contacts"]) == 2

    queue.enqueue(gw.rt, "Contacts", ids, force=True)  # --force sends even unchanged ones
    gw.drain()
    assert gw.fake.upsert_calls["Contacts"] == 3 and len(gw.fake.upsert_bodies[-1][1]["data"]) == 2


def test_a_207_makes_the_bad_record_dead_with_zohos_reason_and_links_the_rest(gw):
    ids = gw.add_customers(5)
    gw.update_customer(ids[2], customers_email_address="not-an-address")
    queue.enqueue(gw.rt, "Contacts", ids)
    gw.drain()

    assert gw.fake.calls["upsert"] == 1
    assert [code for _, _, code in gw.fake.upsert_log] == ["SUCCESS", "SUCCESS", "INVALID_DATA", "SUCCESS", "SUCCESS"]
    assert all(linked(gw, "Contacts", i) for i in ids if i != ids[2])
    assert linked(gw, "Contacts", ids[2]) is None
    dead = queue.dead_jobs(gw.rt)
    assert [(d["module"], d["ops_id"]) for d in dead] == [("Contacts", ids[2])]
    assert "INVALID_DATA" in dead[0]["last_error"] and "Email" in dead[0]["last_error"]
    assert queue.status(gw.rt)["dead"] == 1

    # Fixed in OnPrintShop: the next change revives the dead job, and it goes through.
    gw.update_customer(ids[2], customers_email_address="fixed@example.com")
    queue.enqueue(gw.rt, "Contacts", [ids[2]])
    gw.drain()
    assert linked(gw, "Contacts", ids[2]) and queue.status(gw.rt)["dead"] == 0


def test_a_deal_is_never_sent_before_its_contact_exists(gw, monkeypatch):
    monkeypatch.setattr(batch, "WAIT_FOR_CONTACT_SECONDS", 0)
    customers = gw.add_customers(3)
    orders = gw.add_orders(customers + customers[:1], status_id=3)
    queue.enqueue(gw.rt, "Deals", orders)  # only the orders: their customers are queued by the worker
    gw.drain()

    seen_contacts = set()
    for module, record, code in gw.fake.upsert_log:
        assert code == "SUCCESS"
        if module == "Contacts":
            seen_contacts.add(record["Email"])
        else:
            contact = gw.fake.records["Contacts"][record["Contact_Name"]["id"]]
            assert contact["Email"] in seen_contacts
    deals = {r["Deal_Name"]: r for r in gw.fake.records["Deals"].values()}
    assert len(deals) == 4
    deal = deals[f"OPS Order #{orders[0]}"]
    assert deal["Stage"] == "Printing" and deal["Amount"] == 12.5 and deal["Account_Name"] == {"id": gw.account_id}
    assert deal["Contact_Name"] == {"id": linked(gw, "Contacts", customers[0])}
    assert deal["Closing_Date"] == (gw.rt.ops.now_local() - dt.timedelta(minutes=5)).date().isoformat()
    assert gw.fake.upsert_bodies[-1][1]["duplicate_check_fields"] == ["Deal_Name"]


def test_401_invalid_token_costs_one_refresh_and_no_attempt(gw_sqlite):
    gw = gw_sqlite
    ids = gw.add_customers(3)
    with gw.fake.lock:  # Zoho forgets the access token early (e.g. more than 15 were issued)
        for token in list(gw.fake.access_tokens):
            gw.fake.access_tokens[token] = gw.fake.now() - 1
    refreshes = gw.fake.calls["oauth.refresh"]
    queue.enqueue(gw.rt, "Contacts", ids)
    gw.drain()
    assert gw.fake.calls["401 INVALID_TOKEN"] == 1
    assert gw.fake.calls["oauth.refresh"] == refreshes + 1
    assert len(gw.fake.records["Contacts"]) == 3
    with gw.rt.store.engine.connect() as conn:
        assert set(conn.execute(sa.select(tables.jobs_table.c.attempts)).scalars()) == {0}


def test_a_revoked_refresh_token_pauses_the_queue_with_nothing_dead_until_reconnected(gw):
    ids = gw.add_customers(4)
    for token in list(gw.fake.refresh_tokens):
        requests.post(gw.fake.url + "/oauth/v2/token/revoke", params={"token": token}, timeout=5)
    queue.enqueue(gw.rt, "Contacts", ids)
    gw.drain()
    gw.drain()

    status = queue.status(gw.rt)
    assert status["paused"] and "re-authorization" in status["paused_reason"]
    assert (status["pending"], status["dead"], status["done"]) == (4, 0, 0)
    with gw.rt.store.engine.connect() as conn:
        assert set(conn.execute(sa.select(tables.jobs_table.c.attempts)).scalars()) == {0}
    assert gw.fake.calls["upsert"] == 1  # the one call that met the 401; no retry burnt after
    assert not gw.fake.records["Contacts"]

    gw.connect()  # the admin saves the Zoho settings with a new grant token
    gw.drain()
    status = queue.status(gw.rt)
    assert not status["paused"] and status["done"] == 4
    assert len(gw.fake.records["Contacts"]) == 4


def test_a_spent_daily_budget_pauses_the_queue_with_nothing_dead(make_app, fake_zoho, zoho_settings):
    from tests.outbound.conftest import Gateway
    from gateway.ops.database import demo

    app = make_app(GATEWAY_DAILY_CALL_BUDGET=2, **zoho_settings)
    gw = Gateway(app, fake_zoho)
    demo.create(gw.rt.ops, force=True)
    gw.connect()
    ids = gw.add_customers(350)
    queue.enqueue(gw.rt, "Contacts", ids)
    gw.drain()
    assert fake_zoho.upsert_calls["Contacts"] == 2  # the budget: two calls in 24 hours
    status = queue.status(gw.rt)
    assert status["paused"] and "budget" in status["paused_reason"]
    assert (status["done"], status["pending"], status["dead"]) == (200, 150, 0)
    assert zoho_gate.count_last_day(gw.rt.store, "calls") == 2


def test_read_results_keeps_the_order_and_names_the_field():
    sent = [push.Outgoing(1, {}, "h1"), push.Outgoing(2, {}, "h2")]
    body = {"data": [
        {"code": "SUCCESS", "status": "success", "details": {"id": "77"}},
        {"code": "MANDATORY_NOT_FOUND", "status": "error", "message": "required field not found",
         "details": {"api_name": "Last_Name", "json_path": "$.data[1].Last_Name"}},
    ]}
    ok, bad = push.read_results(207, body, sent)
    assert ok.ok and ok.zoho_id == "77" and ok.ops_id == 1
    assert bad.refused and bad.field == "Last_Name" and "MANDATORY_NOT_FOUND" in bad.describe()


def test_payloads_follow_the_contract_with_optional_custom_fields():
    from gateway.ops.mapping import from_dict

    mapping = from_dict({"zoho": {"contact_ops_id_field": "OPS_Id", "deal_ops_id_field": "OPS_Order_Id",
                                  "deal_payment_status_field": "Payment_Status"}})
    contact = push.contact_record(Customer(id=7, first_name="Ada", last_name="Lovelace", email="ada@example.com", phone=""),
                                  "123", mapping)
    assert contact == {"First_Name": "Ada", "Last_Name": "Lovelace", "Email": "ada@example.com", "Phone": None,
                       "Account_Name": {"id": "123"}, "OPS_Id": 7}
    from decimal import Decimal

    deal = push.deal_record(Order(id=9, customer_id=7, status_id=4, status_name="Shipped", payment_status="Paid",
                                  total=Decimal("1200.5"), currency="USD", purchased=dt.datetime(2026, 3, 4, 23, 59)),
                            "123", "456", mapping, zoho_id="999")
    assert deal == {"Deal_Name": "OPS Order #9", "Amount": 1200.5, "Stage": "Shipped", "Closing_Date": "2026-03-04",
                    "Contact_Name": {"id": "456"}, "Account_Name": {"id": "123"}, "OPS_Order_Id": 9,
                    "Payment_Status": "Paid", "id": "999"}
    assert push.record_hash(deal) == push.record_hash({k: v for k, v in deal.items() if k != "id"})
    assert push.upsert_body("Deals", [deal])["trigger"] == []


@pytest.mark.parametrize("purchased, closing", [
    (dt.datetime(2026, 3, 4, 23, 59), "2026-03-04"),
    (dt.date(2026, 3, 4), "2026-03-04"),
    ("2026-03-04 23:59:00", "2026-03-04"),  # a DATETIME SQLite hands back as text
    ("0000-00-00 00:00:00", None),  # MySQL's zero date as PyMySQL gives it (mysqlclient gives None)
    (None, None),
])
def test_a_deals_closing_date_is_a_real_date_or_none(purchased, closing):
    order = Order(id=9, customer_id=7, status_id=4, status_name="Shipped", payment_status="Paid",
                  total=Decimal("1"), currency="USD", purchased=purchased)
    assert push.deal_record(order, "123", "456")["Closing_Date"] == closing


def test_an_order_of_a_customer_zoho_refused_waits_without_resending_the_customer(gw_sqlite, monkeypatch):
    gw = gw_sqlite
    monkeypatch.setattr(batch, "WAIT_FOR_CONTACT_SECONDS", 0)
    (customer,) = gw.add_customers(1)
    gw.update_customer(customer, customers_email_address="broken")
    (order,) = gw.add_orders([customer])
    queue.enqueue(gw.rt, "Deals", [order])
    for _ in range(3):
        gw.drain()
    assert gw.fake.upsert_calls["Contacts"] == 1 and gw.fake.upsert_calls["Deals"] == 0
    assert [d["ops_id"] for d in queue.dead_jobs(gw.rt)] == [customer]
    with gw.rt.store.engine.connect() as conn:
        note = conn.execute(sa.select(tables.jobs_table.c.last_error).where(tables.jobs_table.c.module == "Deals")).scalar()
    assert f"customer {customer}" in note and "INVALID_DATA" in note

    gw.update_customer(customer, customers_email_address="fixed@example.com")  # fixed in OnPrintShop
    queue.enqueue(gw.rt, "Contacts", [customer])
    with gw.rt.store.begin() as conn:  # instead of waiting the five minutes
        conn.execute(tables.jobs_table.update().where(tables.jobs_table.c.module == "Deals").values(next_try_at=0))
    gw.drain()
    assert len(gw.fake.records["Deals"]) == 1 and queue.status(gw.rt)["dead"] == 0


def test_a_contact_deleted_in_zoho_is_created_again_and_relinked(gw_sqlite):
    gw = gw_sqlite
    (customer,) = gw.add_customers(1)
    queue.enqueue(gw.rt, "Contacts", [customer])
    gw.drain()
    old_id = linked(gw, "Contacts", customer)
    with gw.fake.lock:
        del gw.fake.records["Contacts"][old_id]  # someone deleted it in Zoho
    gw.update_customer(customer, customers_telephone="+1 555 0199")
    queue.enqueue(gw.rt, "Contacts", [customer])
    gw.drain()
    new_id = linked(gw, "Contacts", customer)
    assert new_id and new_id != old_id and gw.fake.records["Contacts"][new_id]["Phone"] == "+1 555 0199"
    assert queue.status(gw.rt)["dead"] == 0
