"""The change poller: queues what changed in OnPrintShop, skips what the webhook wrote from Zoho."""
from __future__ import annotations

import datetime as dt

from gateway.inbound import loopguard
from gateway.outbound import poller, queue


def test_the_poller_queues_changes_once_and_skips_the_ones_the_webhook_wrote(gw):
    rt = gw.rt
    start = rt.ops.now_local() - dt.timedelta(minutes=10)
    poller.set_watermark(rt, "customers", start, 0)
    poller.set_watermark(rt, "orders", start, 0)
    a, b, c = gw.add_customers(3, modified=start - dt.timedelta(minutes=1))  # before the watermark
    assert poller.poll_once(rt, settle=0) == {"customers": 0, "orders": 0}

    changed_at = rt.ops.now_local() - dt.timedelta(seconds=20)
    gw.update_customer(a, customers_telephone="+1 555 0100", last_modified=changed_at)
    gw.update_customer(b, customers_telephone="+1 555 0101", last_modified=changed_at)  # written by the webhook:
    with rt.store.begin() as conn:
        loopguard.record(conn, "customers", b, changed_at)
    gw.update_customer(c, customers_telephone="+1 555 0102", last_modified=rt.ops.now_local())  # too fresh: next round
    assert poller.poll_once(rt, settle=5) == {"customers": 1, "orders": 0}
    assert queue.pending_ids(rt, "Contacts", [a, b, c]) == {a}
    assert poller.poll_once(rt, settle=0)["customers"] == 1  # c, now settled; a is not queued twice
    assert queue.pending_ids(rt, "Contacts", [a, b, c]) == {a, c}
    assert poller.get_watermark(rt, "customers")[1] == c


def test_the_first_round_starts_from_now(gw_sqlite):
    gw = gw_sqlite
    assert poller.poll_once(gw.rt, settle=0) == {"customers": 0, "orders": 0}
    assert queue.status(gw.rt)["pending"] == 0  # the demo's rows are pushed with `push … --all`, not by surprise
