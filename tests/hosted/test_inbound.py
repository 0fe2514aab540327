"""Changes from Zoho through OnPrintShop's API: outages, timeouts, 429s, what the API cannot write."""
from __future__ import annotations

import time

import pytest

from gateway.inbound import reapply, reports
from gateway.ops.api import client
from gateway.ops.api import records
from gateway.ops.api.connect import STATUSES_SETTING
from gateway.ops.api import writer as api_writer
from gateway.sync import loopguard
from tests.hosted.conftest import zoho_time
from tests.inbound.test_group_commit import post_as_one_batch


def _linked_order(gw, status="Pending"):
    """An order pushed to Zoho (so its Deal is linked), and that Deal's id."""
    customer = gw.ops.store.add_customer("Ada", "Lovelace", "ada@example.com")
    order = gw.ops.store.add_order(customer, status)
    gw.push_all("orders")
    return order, gw.deal(order)["id"]


def test_an_api_outage_mid_stream_loses_nothing(hosted_on):
    gw, ops = hosted_on, hosted_on.ops
    order, deal = _linked_order(gw)
    stages = ["Order Processing", "Printing", "Shipped", "Order Completed"]
    answers = []
    for n, stage in enumerate(stages):
        ops.outage = n in (1, 2)  # OnPrintShop goes away after the first change and comes back for the last
        answers.append(gw.post("deals", {"id": deal, "stage": stage, "modified_time": zoho_time(60 * (n + 1))}).get_json())
    assert answers == [{"status": "applied"}, {"status": "accepted"}, {"status": "accepted"}, {"status": "accepted"}]
    assert [h["status"] for h in ops.store.history[order]] == ["Order Processing"]  # the last waits behind the others

    ops.outage = False
    result = reapply.reapply_pending(gw.rt)
    assert result["unavailable"] is False and reports.pending_count(gw.rt) == 0
    assert [h["status"] for h in ops.store.history[order]] == stages  # each once, in Zoho's order
    assert ops.store.orders[order]["order_status"] == "Order Completed"


def test_a_timed_out_status_change_that_was_applied_is_not_applied_twice(hosted, monkeypatch):
    gw, ops = hosted, hosted.ops
    gw.rt.ops.notify_customer = True  # OPS_API_NOTIFY_CUSTOMER=1: each applied change e-mails the customer
    order, deal = _linked_order(gw)
    gw.start_feed()
    monkeypatch.setattr(client, "READ_TIMEOUT", 1.0)
    ops.slow_after_mutation = 2.0  # applied at once, answered after the gateway stopped waiting
    answer = gw.post("deals", {"id": deal, "stage": "Printing", "modified_time": zoho_time(30)})
    assert answer.get_json() == {"status": "accepted"}  # the outcome is unknown: kept, tried again
    assert len(ops.store.history[order]) == 1

    ops.slow_after_mutation = 0.0
    reapply.reapply_pending(gw.rt)
    assert reports.recent(gw.rt, limit=1)[0]["outcome"] == "applied"
    assert [h["status"] for h in ops.store.history[order]] == ["Printing"]  # no second history entry…
    assert ops.store.emails == [(order, "Printing")]                       # …and no second e-mail
    upserts = gw.zoho.upsert_calls["Deals"]
    gw.poll()
    gw.drain()
    assert gw.zoho.upsert_calls["Deals"] == upserts  # nor is it pushed back to Zoho


def test_a_payment_status_is_answered_as_today_and_says_it_was_not_applied(hosted):
    gw, ops = hosted, hosted.ops
    order, deal = _linked_order(gw)
    answer = gw.post("deals", {"id": deal, "stage": "Printing", "payment_status": "Paid", "modified_time": zoho_time(30)})
    assert answer.status_code == 200 and answer.get_json() == {"status": "applied"}
    assert ops.store.orders[order]["order_status"] == "Printing"
    assert ops.store.orders[order]["payment_status_title"] == "Unpaid"
    reason = reports.recent(gw.rt, limit=1)[0]["reason"]
    assert "payment_status was not applied: OnPrintShop's API cannot set a payment status" in reason
    page = _admin_page(gw)
    assert "payment_status was not applied" in page


def test_a_429_stops_every_call_for_its_retry_after_and_nothing_goes_dead(hosted):
    gw, ops = hosted, hosted.ops
    order, deal = _linked_order(gw)
    ops.rate, ops.windows = (1, 5.0), {}  # OnPrintShop's own limit is lower than the gateway was told
    first = gw.post("deals", {"id": deal, "stage": "Printing", "modified_time": zoho_time(30)})
    assert first.get_json() == {"status": "accepted"}  # the read went through, the mutation got the 429
    assert ops.calls["429"] == 1 and gw.rt.ops.limiter.blocked_for() > 2
    calls = sum(ops.calls.values())
    second = gw.post("deals", {"id": deal, "stage": "Shipped", "modified_time": zoho_time(60)})
    assert second.get_json() == {"status": "accepted"}
    assert sum(ops.calls.values()) == calls  # nothing was sent while every process waits out Retry-After

    ops.rate, ops.windows = (120, 60.0), {}
    deadline = time.monotonic() + 20
    while reports.pending_count(gw.rt) and time.monotonic() < deadline:
        reapply.reapply_pending(gw.rt)  # waits for the permits, or finds OnPrintShop still away
    assert reports.pending_count(gw.rt) == 0 and reports.failed_count(gw.rt) == 0
    assert [h["status"] for h in ops.store.history[order]] == ["Printing", "Shipped"]


@pytest.mark.parametrize("params, status, parameter", [
    ({"id": "999", "stage": "Printing"}, 404, None),
    ({"stage": "No Such Stage"}, 422, "stage"),
])
def test_every_answer_keeps_its_meaning(hosted, params, status, parameter):
    gw = hosted
    _order, deal = _linked_order(gw)
    answer = gw.post("deals", {"id": deal, **params, "modified_time": zoho_time(30)})
    assert answer.status_code == status
    assert answer.get_json().get("parameter") == parameter


def _admin_page(gw) -> str:
    from tests.conftest import logged_in

    return logged_in(gw.app).client.get("/admin/").get_data(as_text=True)


def test_an_outage_during_a_poller_round_loses_no_change(hosted):
    gw, ops = hosted, hosted.ops
    order, _deal = _linked_order(gw)
    gw.start_feed()
    ops.store.touch(order, total_amount=99.0)
    ops.outage = True
    assert gw.poll() == {"customers": 0, "orders": 0}  # nothing could be read: the round says so and moves nothing
    ops.outage = False
    assert gw.poll_until("orders", 1) == 1
    gw.drain()
    assert gw.deal(order)["Amount"] == 99.0


def test_the_gateways_own_write_does_not_make_zohos_next_change_stale(hosted_on):
    """OnPrintShop stamps an order's last-modified with the time of the gateway's write, which comes
    after the Zoho change it carries (and after any change made in Zoho meanwhile)."""
    gw, ops = hosted_on, hosted_on.ops
    order, deal = _linked_order(gw)
    ops.advance(300)  # every write from now on is stamped 5 minutes after the Zoho changes below
    first = gw.post("deals", {"id": deal, "stage": "Printing", "modified_time": zoho_time(60)})
    second = gw.post("deals", {"id": deal, "stage": "Shipped", "modified_time": zoho_time(61)})
    assert (first.get_json(), second.get_json()) == ({"status": "applied"}, {"status": "applied"})
    assert [h["status"] for h in ops.store.history[order]] == ["Printing", "Shipped"]


def test_two_changes_of_one_order_in_one_batch_are_both_applied_in_order(hosted_on):
    gw, ops = hosted_on, hosted_on.ops
    order, deal = _linked_order(gw)
    ops.advance(300)
    responses = post_as_one_batch(gw, [("deals", {"id": deal, "stage": stage, "modified_time": zoho_time(n + 1)})
                                       for n, stage in enumerate(["Printing", "Shipped"])])
    # The batch reserves the API calls of both changes; the first one's write does not make the second stale.
    assert [r.get_json() for r in responses] == [{"status": "applied"}, {"status": "applied"}]
    assert [h["status"] for h in ops.store.history[order]] == ["Printing", "Shipped"]


def test_changes_kept_through_an_outage_are_all_applied_when_it_ends(hosted_on):
    gw, ops = hosted_on, hosted_on.ops
    order, deal = _linked_order(gw)
    stages = ["Order Processing", "Printing", "Shipped"]
    ops.outage = True
    for n, stage in enumerate(stages):
        assert gw.post("deals", {"id": deal, "stage": stage, "modified_time": zoho_time(n + 1)}).get_json() == {
            "status": "accepted"}
    ops.outage = False
    ops.advance(600)  # applied ten minutes later: each write is stamped after every one of the changes
    reapply.reapply_pending(gw.rt)
    assert reports.pending_count(gw.rt) == 0
    assert [r["outcome"] for r in reports.recent(gw.rt, limit=3)] == ["applied"] * 3
    assert [h["status"] for h in ops.store.history[order]] == stages


def test_a_change_made_in_onprintshop_after_zohos_makes_it_stale_and_a_repeat_is_a_duplicate(hosted):
    gw, ops = hosted, hosted.ops
    order, deal = _linked_order(gw)
    applied = {"id": deal, "stage": "Printing", "modified_time": zoho_time(30)}
    assert gw.post("deals", applied).get_json() == {"status": "applied"}
    assert gw.post("deals", applied).get_json() == {"status": "duplicate"}
    late = zoho_time(40)
    ops.advance(120)
    ops.store.touch(order, order_status="Shipped", orders_status_id=next(
        s["process_status_id"] for s in ops.store.statuses if s["process_status_title"] == "Shipped"))  # a person, later
    answer = gw.post("deals", {"id": deal, "stage": "Order Processing", "modified_time": late})
    assert answer.status_code == 200 and answer.get_json() == {"status": "stale"}
    assert ops.store.orders[order]["order_status"] == "Shipped"
    assert [h["status"] for h in ops.store.history[order]] == ["Printing"]


def test_a_person_editing_the_order_after_the_gateways_write_still_makes_an_older_change_stale(hosted):
    """The gateway's own write is recognised by OnPrintShop's time of it, not by the gateway's copy:
    an edit the copy does not hold (an address, a comment) moves that time, and counts."""
    gw, ops = hosted, hosted.ops
    order, deal = _linked_order(gw)
    gw.start_feed()
    ops.advance(300)
    assert gw.post("deals", {"id": deal, "stage": "Printing", "modified_time": zoho_time(60)}).get_json() == {
        "status": "applied"}
    ops.advance(60)
    ops.store.touch(order)  # a person edits something the gateway does not copy, after the gateway's write
    gw.poll()  # the gateway reads the order again: same content, a later last-modified
    answer = gw.post("deals", {"id": deal, "stage": "Shipped", "modified_time": zoho_time(120)})
    assert answer.get_json() == {"status": "stale"}
    assert [h["status"] for h in ops.store.history[order]] == ["Printing"]


def _a_deal_repointed_and_another_waiting(gw):
    """Two linked orders; one's order is deleted in OnPrintShop and its Deal now names a third order
    (ops_id): that change reads twice before it writes and reads back (4 calls; the other takes 3).
    Both changes wait out an outage.
    Returns (deal, order) of the repointed change, (deal, order) of the other; the first sorts first."""
    ops = gw.ops
    customer = ops.store.add_customer("Ada", "Lovelace", "ada@example.com")
    first, second = ops.store.add_order(customer), ops.store.add_order(customer)
    gw.push_all("orders")
    deals = sorted([(gw.deal(first)["id"], first), (gw.deal(second)["id"], second)])
    (repointed, gone), (other, other_order) = deals  # the inbox applies record by record, in this order
    third = ops.store.add_order(customer)
    del ops.store.orders[gone]
    ops.outage = True
    for answer in (gw.post("deals", {"id": repointed, "ops_id": str(third), "stage": "Printing", "modified_time": zoho_time(30)}),
                   gw.post("deals", {"id": other, "stage": "Shipped", "modified_time": zoho_time(30)})):
        assert answer.get_json() == {"status": "accepted"}
    ops.outage = False
    return (repointed, third), (other, other_order)


def test_a_change_needing_more_api_calls_than_set_aside_is_applied_and_holds_up_no_other(hosted_on, monkeypatch):
    gw, ops = hosted_on, hosted_on.ops
    monkeypatch.setattr(api_writer, "RESERVED", 3)  # a delivery sets aside 3 calls: the repointed Deal needs 4
    (_deal, third), (_other, other_order) = _a_deal_repointed_and_another_waiting(gw)

    result = reapply.reapply_pending(gw.rt)
    assert result == {"applied": 2, "left": 0, "unavailable": False}
    assert reports.pending_count(gw.rt) == 0
    assert [h["status"] for h in ops.store.history[third]] == ["Printing"]
    assert [h["status"] for h in ops.store.history[other_order]] == ["Shipped"]
    # Written only with its read back at hand: the order's new version is known as the gateway's own
    # write, so the poller does not push it back to Zoho.
    written = records.parse_time(ops.store.orders[third]["order_last_modified_date"])
    with gw.rt.store.engine.connect() as conn:
        assert loopguard.written_by_gateway(conn, loopguard.ORDER_WRITES, third, written)


def test_a_change_needing_more_api_calls_than_it_may_take_is_counted_and_the_others_go_on(hosted, monkeypatch):
    gw, ops = hosted, hosted.ops
    monkeypatch.setattr(api_writer, "RESERVED", 3)
    monkeypatch.setattr(api_writer, "AMPLE", 3)  # not even the change tried alone may take 4
    (deal, third), (_other, other_order) = _a_deal_repointed_and_another_waiting(gw)

    result = reapply.reapply_pending(gw.rt)
    assert result["unavailable"] is False  # not an outage: the re-applier goes on, and does not back off
    assert [h["status"] for h in ops.store.history[other_order]] == ["Shipped"]
    assert ops.store.history[third] == []
    waiting = [r for r in reports.recent(gw.rt) if r["zoho_id"] == deal]
    assert [r["outcome"] for r in waiting] == ["accepted"]
    assert "needs more OnPrintShop API calls" in waiting[0]["reason"]  # what the admin page shows for it


def test_a_change_whose_larger_share_of_api_calls_is_not_free_waits_and_the_others_go_on(hosted, monkeypatch):
    gw, ops = hosted, hosted.ops
    monkeypatch.setattr(api_writer, "RESERVED", 3)
    monkeypatch.setattr(api_writer, "RESERVE_WAIT", 0.2)
    (deal, third), (_other, other_order) = _a_deal_repointed_and_another_waiting(gw)
    limiter = gw.rt.ops.limiter
    usage = limiter.usage()
    # Other work holds all but 6 of the permits: the repointed change's first try spends 2 of them,
    # the 16 it may take alone are not free, and the other change's 3 are.
    held = limiter.take(usage["permits"] - usage["in_use"] - usage["resting"] - 6, 1.0)
    try:
        result = reapply.reapply_pending(gw.rt)
    finally:
        limiter.give_back(held)
    assert result["unavailable"] is False
    assert [h["status"] for h in ops.store.history[other_order]] == ["Shipped"]
    assert ops.store.history[third] == []
    waiting = [r for r in reports.recent(gw.rt) if r["zoho_id"] == deal]
    assert [r["outcome"] for r in waiting] == ["accepted"] and reports.pending_count(gw.rt) == 1


def test_a_stored_change_is_applied_when_the_status_list_has_grown_old(hosted_on):
    """The re-applier reads OnPrintShop's statuses anew (a webhook's validation would have) inside its
    transaction: from the change's own calls, nothing written to the state store meanwhile."""
    gw, ops = hosted_on, hosted_on.ops
    order, deal = _linked_order(gw)
    ops.outage = True
    assert gw.post("deals", {"id": deal, "stage": "Printing", "modified_time": zoho_time(30)}).get_json() == {
        "status": "accepted"}
    ops.outage = False
    stored = gw.rt.store.get_setting(STATUSES_SETTING)
    gw.rt.store.set_setting(STATUSES_SETTING, {**stored, "at": stored["at"] - 3600})  # read an hour ago
    gw.rt.ops._statuses = None  # and this process has not looked since
    before = ops.calls["orderStatus"]

    result = reapply.reapply_pending(gw.rt)
    assert result == {"applied": 1, "left": 0, "unavailable": False}
    assert [h["status"] for h in ops.store.history[order]] == ["Printing"]
    assert ops.calls["orderStatus"] == before + 1
