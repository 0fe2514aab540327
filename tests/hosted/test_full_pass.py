"""Customers have no modified-since filter: the slow full pass finds a change made in OnPrintShop."""
from __future__ import annotations

import datetime as dt
import time

from tests.conftest import logged_in


def test_the_full_pass_finds_a_changed_customer_paced_and_resumable(make_hosted, make_app, zoho_settings, fake_ops):
    gw = make_hosted(OPS_API_RATE_LIMIT="1200 per minute")
    fake_ops.rate = (1200, 60.0)
    long_ago = fake_ops.store.now() - dt.timedelta(days=30)  # registered before the gateway came: no registration pass finds them
    customers = [fake_ops.store.add_customer(f"First{n}", f"Last{n}", f"c{n}@example.com", registered=long_ago)
                 for n in range(600)]
    gw.start_feed()
    gw.push_all("customers")
    assert len(gw.zoho.records["Contacts"]) == 600

    # Changed in OnPrintShop, no order, no new registration: only the full pass can see it (the oldest
    # customers come last: newest first).
    fake_ops.store.customers[customers[0]]["customers_last_name"] = "Renamed"
    first_round = gw.poll()
    report = gw.rt.ops.report()
    assert report["progress"]["total"] == 600 and 0 < report["progress"]["offset"] < 600  # paced: not all at once
    assert report["progress"]["per_minute"] == 120 * 250  # a tenth of 1200 calls a minute, 250 customers each

    # Another process (a restart) goes on where it stopped.
    again = make_app(OPS_BACKEND="api", OPS_API_RATE_LIMIT="1200 per minute", **zoho_settings)
    assert again.extensions["gateway"].ops.report()["progress"]["offset"] == report["progress"]["offset"]
    page = logged_in(again).client.get("/admin/").get_data(as_text=True)
    assert f"{report['progress']['offset']} of 600 customers" in page

    deadline, found = time.monotonic() + 20, first_round["customers"]
    while not found and time.monotonic() < deadline:
        found = gw.poll()["customers"]
    assert found == 1
    gw.drain()
    assert gw.contact("c0@example.com")["Last_Name"] == "Renamed"
    assert gw.rt.ops.report()["progress"]["passes"] == 1, gw.rt.store.get_setting("ops_api.full_pass")


def test_a_store_that_pages_below_250_is_read_to_its_end(make_hosted, fake_ops, monkeypatch):
    """A server that caps pages below the 250 asked for: the pass goes on by the total, not by a short page."""
    monkeypatch.setattr("tests.fakeops.store.MAX_PAGE", 100)
    gw = make_hosted(OPS_API_RATE_LIMIT="1200 per minute")
    fake_ops.rate = (1200, 60.0)
    long_ago = fake_ops.store.now() - dt.timedelta(days=30)
    customers = [fake_ops.store.add_customer(f"First{n}", f"Last{n}", f"c{n}@example.com", registered=long_ago)
                 for n in range(300)]
    gw.start_feed()
    gw.push_all("customers")
    fake_ops.store.customers[customers[0]]["customers_last_name"] = "Renamed"  # the oldest: on the last page

    deadline, found = time.monotonic() + 20, 0
    while not found and time.monotonic() < deadline:
        found = gw.poll()["customers"]
    assert found == 1
    progress = gw.rt.ops.report()["progress"]
    assert progress["passes"] == 1 and progress["total"] == 300
