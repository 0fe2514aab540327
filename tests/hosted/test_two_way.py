"""A hosted store synced both ways through OnPrintShop's API (the fake one) and Zoho (the fake one)."""
from __future__ import annotations

import datetime as dt

import pytest

from gateway.outbound import queue
from tests.hosted.conftest import zoho_time


def test_two_way_sync_of_a_hosted_store(hosted_on):
    gw, ops = hosted_on, hosted_on.ops
    ada = ops.store.add_customer("Ada", "Lovelace", "ada@example.com", phone="+44 20 7946 0018")
    grace = ops.store.add_customer("Grace", "Hopper", "grace@example.com")
    first = ops.store.add_order(ada, "Pending", 149.9, "GBP", invoice_date="2026-11-20 10:00:00")
    gw.start_feed()

    # What existed is pushed with `push … --all`: orders, and their customers as Contacts first.
    runner = gw.app.test_cli_runner()
    assert "queued 1 order and 1 customer whose" in runner.invoke(args=["push", "orders", "--all"]).output
    gw.drain()
    deal = gw.deal(first)
    assert (deal["Stage"], deal["Amount"], deal["Closing_Date"]) == ("Pending", 149.9, "2026-11-20")
    assert deal["Contact_Name"]["id"] == gw.contact("ada@example.com")["id"]

    # A new order in OnPrintShop: found by the poller (by its last-modified date), with its customer.
    second = ops.store.add_order(grace, "Printing", 20.0)
    assert gw.poll() == {"customers": 1, "orders": 1}
    gw.drain()
    assert gw.deal(second)["Stage"] == "Printing"
    assert gw.deal(second)["Closing_Date"] == ops.store.now().date().isoformat()  # no invoice date: first seen
    assert gw.contact("grace@example.com")["Last_Name"] == "Hopper"

    # A Stage change in Zoho → updateOrderStatus with the status title, Zoho's comment, notify 0.
    answer = gw.post("deals", {"id": deal["id"], "stage": "shipped", "modified_time": zoho_time()})
    assert answer.status_code == 200 and answer.get_json() == {"status": "applied"}, answer.get_json()
    assert ops.store.orders[first]["order_status"] == "Shipped"
    [entry] = ops.store.history[first]
    assert entry["status"] == "Shipped" and entry["notify"] == 0 and f"Deal {deal['id']}" in entry["comment"]
    assert ops.store.emails == []

    # A Contact change in Zoho → setCustomer with only what changed, and the Zoho id as external_ref.
    contact = gw.contact("ada@example.com")
    answer = gw.post("contacts", {"id": contact["id"], "first_name": "Augusta Ada", "last_name": "Lovelace",
                                  "modified_time": zoho_time()})
    assert answer.status_code == 200 and answer.get_json() == {"status": "applied"}, answer.get_json()
    assert ops.set_customer_calls == [(ada, {"first_name": "Augusta Ada", "external_ref": contact["id"]})]
    assert ops.store.customers[ada]["customers_first_name"] == "Augusta Ada"

    # The gateway's own writes are not pushed back to Zoho.
    upserts = dict(gw.zoho.upsert_calls)
    gw.poll()
    gw.drain()
    assert dict(gw.zoho.upsert_calls) == upserts
    assert queue.status(gw.rt)["dead"] == 0

    # A change made in OnPrintShop is.
    ops.store.touch(first, total_amount=175.0)
    assert gw.poll_until("orders", 1) == 1
    gw.drain()
    assert gw.deal(first)["Amount"] == 175.0 and gw.deal(first)["Stage"] == "Shipped"


def test_push_by_id_reads_the_order_fresh_and_names_what_is_missing(hosted):
    gw, ops = hosted, hosted.ops
    order = ops.store.add_order(ops.store.add_customer(email="ada@example.com"), "Printing")
    runner = gw.app.test_cli_runner()
    missing = runner.invoke(args=["push", "orders", "--id", "999"])
    assert missing.exit_code != 0 and "no orders with id 999 in OnPrintShop's API; nothing was queued" in missing.output
    assert "queued 1 order and 1 customer whose" in runner.invoke(args=["push", "orders", "--id", str(order)]).output
    ops.store.touch(order, order_status="Shipped")  # changed after the push was asked for: the latest read is sent
    assert runner.invoke(args=["push", "orders", "--id", str(order), "--force"]).output == (
        "queued 1 order and 1 customer whose Contact is not in Zoho yet (sent even if unchanged)\n")
    gw.drain()
    assert gw.deal(order)["Stage"] == "Shipped"


def test_a_store_whose_day_ends_later_than_the_gateway_thinks_loses_no_change(hosted, monkeypatch):
    """OPS_TIMEZONE set wrong, so that the gateway believes the store's day is already over (here:
    it is 00:30 tomorrow to the gateway, up to a day ahead of the store). An order changed on the
    store's own today is still read."""
    gw, ops = hosted, hosted.ops
    store_now = lambda: dt.datetime.fromtimestamp(ops.now(), dt.timezone.utc).replace(tzinfo=None)  # noqa: E731
    ahead = dt.datetime.combine(store_now().date() + dt.timedelta(days=1), dt.time(0, 30)) - store_now()
    monkeypatch.setattr(gw.rt.ops, "now_local", lambda: store_now() + ahead)
    customer = ops.store.add_customer("Ada", "Lovelace", "ada@example.com")
    order = ops.store.add_order(customer)
    gw.push_all("orders")
    gw.start_feed()
    ops.store.touch(order, total_amount=175.0)
    assert gw.poll_until("orders", 1) == 1
    gw.drain()
    assert gw.deal(order)["Amount"] == 175.0


@pytest.mark.parametrize("form", ["code", "message", "http-404"])
def test_a_day_without_changes_is_read_as_empty_however_onprintshop_says_it(hosted, form):
    gw, ops = hosted, hosted.ops
    ops.not_found_form = form
    gw.start_feed()
    asked = ops.calls["orders"]
    assert gw.poll() == {"customers": 0, "orders": 0}
    assert ops.calls["orders"] > asked  # the empty days were asked for…
    assert gw.rt.ops.api.last_failure is None and gw.rt.ops.readiness() == ("ops_api", "ok")  # …and read as no rows
    customer = ops.store.add_customer("Ada", "Lovelace", "ada@example.com")
    ops.store.add_order(customer)
    assert gw.poll_until("orders", 1) == 1
