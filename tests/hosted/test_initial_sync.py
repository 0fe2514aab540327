"""The initial sync of a hosted store with 10,000 orders: paged at 250, no 429, every record in Zoho."""
from __future__ import annotations

import time

import pytest

from gateway.outbound import queue

ORDERS, CUSTOMERS = 10_000, 2_000


@pytest.mark.slow
def test_ten_thousand_orders_are_synced_without_a_single_429(hosted, capsys):
    gw, ops = hosted, hosted.ops
    customers = [ops.store.add_customer(f"First{n}", f"Last{n}", f"c{n}@example.com") for n in range(CUSTOMERS)]
    for n in range(ORDERS):
        ops.store.add_order(customers[n % CUSTOMERS], "Pending", 10.0 + n % 7)
    ops.latency = 0.05  # each answer takes a little while, as over a network
    before = dict(ops.calls)

    started = time.monotonic()
    result = gw.app.test_cli_runner().invoke(args=["push", "orders", "--all"])
    listed = time.monotonic() - started
    assert result.output.strip() == f"queued {ORDERS} orders and {CUSTOMERS} customers whose Contact is not in Zoho yet"
    gw.drain()
    total = time.monotonic() - started

    assert queue.status(gw.rt)["done"] == ORDERS + CUSTOMERS and queue.status(gw.rt)["dead"] == 0
    assert len(gw.zoho.records["Deals"]) == ORDERS and len(gw.zoho.records["Contacts"]) == CUSTOMERS
    assert ops.calls["429"] == 0
    api_calls = {k: ops.calls[k] - before.get(k, 0) for k in ("orders", "customers", "orderStatus", "token")}
    assert api_calls["orders"] == ORDERS // 250  # pages of 250: 40 calls, a third of one minute's 120
    assert api_calls["customers"] == 0           # the orders carry their customers
    with capsys.disabled():
        print(f"\ninitial sync: {ORDERS} orders, {CUSTOMERS} customers; OnPrintShop calls {api_calls}; "
              f"listing {listed:.1f} s, all in Zoho after {total:.1f} s; 429s: {ops.calls['429']}")


@pytest.mark.slow
def test_an_initial_sync_larger_than_the_rate_limit_waits_for_it_and_gets_no_429(make_hosted, fake_ops):
    """The same sync with OnPrintShop's limit scaled down (6 calls per 2 s) so that the listing
    needs several windows: the limiter paces it, and OnPrintShop never answers 429."""
    gw = make_hosted(OPS_API_RATE_LIMIT="6 per 2 seconds")
    fake_ops.rate, fake_ops.windows, fake_ops.max_in_window = (6, 2.0), {}, 0
    customers = [fake_ops.store.add_customer(f"First{n}", f"Last{n}", f"c{n}@example.com") for n in range(200)]
    for n in range(5_000):
        fake_ops.store.add_order(customers[n % 200])
    result = gw.app.test_cli_runner().invoke(args=["push", "orders", "--all"])
    assert result.output.strip() == "queued 5000 orders and 200 customers whose Contact is not in Zoho yet", result.output
    gw.drain()
    assert len(gw.zoho.records["Deals"]) == 5_000 and queue.status(gw.rt)["dead"] == 0
    assert fake_ops.calls["orders"] >= 20       # 20 pages: more than three windows' worth of calls
    assert fake_ops.calls["429"] == 0 and fake_ops.max_in_window <= 6


def test_push_all_waits_out_onprintshops_429s_and_lists_every_order(hosted, fake_ops):
    """OnPrintShop's own limit is lower than OPS_API_RATE_LIMIT says (another app shares the API
    client): each page answered 429 is asked again after its Retry-After, and the listing completes."""
    gw = hosted
    customer = fake_ops.store.add_customer("Ada", "Lovelace", "ada@example.com")
    for _ in range(600):  # three pages of 250
        fake_ops.store.add_order(customer)
    fake_ops.rate, fake_ops.windows = (1, 2.0), {}  # one call in 2 s, against the 120 a minute configured
    result = gw.app.test_cli_runner().invoke(args=["push", "orders", "--all"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "queued 600 orders and 1 customer whose Contact is not in Zoho yet"
    assert fake_ops.calls["429"] >= 1 and fake_ops.calls["orders"] == 3
    gw.drain()
    assert len(gw.zoho.records["Deals"]) == 600 and queue.status(gw.rt)["dead"] == 0
