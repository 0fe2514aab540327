"""The change poller: queues what changed in OnPrintShop, skips what the webhook wrote from Zoho."""
from __future__ import annotations

import datetime as dt

from gateway.sync import loopguard
from gateway.outbound import poller, queue


def test_the_poller_queues_changes_once_and_skips_the_ones_the_webhook_wrote(gw):
    rt = gw.rt
    start = rt.ops.now_local() - dt.timedelta(minutes=10)
    poller.set_watermark(rt, "customers", start, 0)
    poller.set_watermark(rt, "orders", start, 0)
    # Before the watermark and the window re-read behind it: already pushed (or left to `push --all`).
    a, b, c = gw.add_customers(3, modified=start - poller.OVERLAP - dt.timedelta(minutes=1))
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
    existing = gw.add_customers(1, modified=gw.rt.ops.now_local() - dt.timedelta(minutes=1))
    assert poller.poll_once(gw.rt, settle=0) == {"customers": 0, "orders": 0}
    # Not in a later round either: the window re-read behind the watermark starts at the first round.
    assert poller.poll_once(gw.rt, settle=0) == {"customers": 0, "orders": 0}
    assert queue.pending_ids(gw.rt, "Contacts", existing) == set()
    assert queue.status(gw.rt)["pending"] == 0  # the demo's rows are pushed with `push … --all`, not by surprise


def test_a_row_that_lands_behind_the_watermark_is_queued_once_and_sent_once(gw):
    """A row stamped by a lagging clock, or committed long after its last_modified, is not lost."""
    rt, fake = gw.rt, gw.fake
    now = rt.ops.now_local()
    for table in ("customers", "orders"):
        poller.set_watermark(rt, table, now - dt.timedelta(minutes=1), 0)
    first = gw.add_customers(1, modified=now - dt.timedelta(seconds=20))
    assert poller.poll_once(rt, settle=0)["customers"] == 1
    assert poller.get_watermark(rt, "customers")[1] == first[0]

    late = gw.add_customers(1, modified=now - dt.timedelta(minutes=3), prefix="late")  # behind the watermark
    assert poller.poll_once(rt, settle=0)["customers"] == 1
    assert queue.pending_ids(rt, "Contacts", first + late) == set(first + late)
    gw.drain()
    upserts = fake.upsert_calls["Contacts"]
    assert fake.upserted["Contacts"] and queue.status(rt)["done"] == 2

    # Later rounds read the window again: what they already queued makes no job and no Zoho call.
    for _ in range(3):
        assert poller.poll_once(rt, settle=0) == {"customers": 0, "orders": 0}
    assert queue.status(rt)["pending"] == 0 and queue.status(rt)["done"] == 2
    gw.drain()
    assert fake.upsert_calls["Contacts"] == upserts

    # A new change inside the window (again behind the watermark) is a new version: queued and sent.
    gw.update_customer(late[0], customers_telephone="+1 555 0199", last_modified=now - dt.timedelta(minutes=2))
    assert poller.poll_once(rt, settle=0)["customers"] == 1
    gw.drain()
    assert fake.upsert_calls["Contacts"] == upserts + 1


def test_changes_in_the_hour_repeated_when_clocks_go_back_are_not_missed(make_app, fake_zoho, zoho_settings, monkeypatch):
    """New York, 1 November 2026: at 06:00 UTC 02:00 EDT becomes 01:00 EST. A customer changed at
    01:20 EST (the second 01:20) is 35 minutes behind the watermark the poller reached at 01:55 EDT."""
    from gateway import timezones
    from tests.outbound.conftest import Gateway as OutboundGateway

    utc = dt.timezone.utc
    moment = [dt.datetime(2026, 11, 1, 5, 55, tzinfo=utc).timestamp()]
    monkeypatch.setattr(timezones, "clock", lambda: moment[0])
    gw = OutboundGateway(make_app(OPS_TIMEZONE="America/New_York", **zoho_settings), fake_zoho)
    from gateway.ops.database import demo

    demo.create(gw.rt.ops, force=True)
    gw.connect()
    rt = gw.rt
    assert poller.poll_once(rt, settle=0) == {"customers": 0, "orders": 0}  # first round: from 01:55 EDT
    moment[0] = dt.datetime(2026, 11, 1, 6, 20, tzinfo=utc).timestamp()
    [changed] = gw.add_customers(1, modified=rt.ops.now_local())  # 01:20 again, now EST
    assert rt.ops.now_local() == dt.datetime(2026, 11, 1, 1, 20)
    moment[0] = dt.datetime(2026, 11, 1, 6, 30, tzinfo=utc).timestamp()
    assert poller.poll_once(rt, settle=0)["customers"] == 1
    assert queue.pending_ids(rt, "Contacts", [changed]) == {changed}
    assert poller.poll_once(rt, settle=0)["customers"] == 0  # queued once, not again each round
