"""Group commit: deliveries queued while a batch commits are decided and written together, and
each is answered as it would be alone.

Every test forms its batch deterministically: the committer is held (`GroupCommitter.hold`)
while the deliveries are posted one by one, each posted once the previous one is queued (so
the queue's order is the order given), and released once all are queued.
"""
from __future__ import annotations

import contextlib
import sqlite3
import threading
import time

import pytest
import sqlalchemy as sa

from gateway.inbound import inbox, reapply, reports
from tests.conftest import mysql_error, wait_until
from tests.inbound.conftest import Gateway
from tests.inbound.test_perf_webhook import Statements
from tests.inbound.test_refusals import _allow_order_3, _refuse_order_3

BASE = int(time.time()) - 3600


def zt(offset: int = 0) -> str:
    return str((BASE + offset) * 1000)


def post_as_one_batch(gw, deliveries: list[tuple[str, dict]]) -> list:
    """Post the deliveries (module, params) from threads of their own, queued in this order behind
    the held committer, then let them go as one batch; returns the responses in the same order."""
    committer = inbox.committer(gw.rt)
    responses: list = [None] * len(deliveries)
    errors: list = []

    def post(index, module, params):
        try:
            responses[index] = gw.app.test_client().post(f"/webhooks/zoho/{module}", data=params,
                                                         headers={"X-Webhook-Token": gw.secret})
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = []
    with committer.hold:
        for index, (module, params) in enumerate(deliveries):
            thread = threading.Thread(target=post, args=(index, module, params))
            thread.start()
            threads.append(thread)
            wait_until(lambda n=index + 1: committer.queued() == n, timeout=30, message=f"delivery {index + 1} to be queued")
    for thread in threads:
        thread.join(60)
    assert not errors and all(r is not None for r in responses)
    return responses


@contextlib.contextmanager
def counting_commits(*engines):
    """How many transactions each engine committed meanwhile (a dict filled in on the way)."""
    counts: dict = {id(engine): 0 for engine in engines}

    def listener_for(engine):
        def committed(_conn):
            counts[id(engine)] += 1
        return committed

    listeners = [(engine, listener_for(engine)) for engine in {id(e): e for e in engines}.values()]
    for engine, listener in listeners:
        sa.event.listen(engine, "commit", listener)
    try:
        yield lambda engine: counts[id(engine)]
    finally:
        for engine, listener in listeners:
            sa.event.remove(engine, "commit", listener)


def answers(responses) -> list:
    return [(r.status_code, r.get_json()["status"]) for r in responses]


def test_deliveries_of_one_record_in_one_batch_keep_modified_time_order(make_app, state_db_url):
    gw = Gateway(make_app(DATABASE_URL=state_db_url))
    rt = gw.rt
    sent = [("deals", {"id": "9701", "ops_id": "1", "stage": stage, "modified_time": zt(offset)})
            for stage, offset in (("Printing", 30), ("Order Processing", 10), ("Shipped", 60), ("Cancelled", 40))]
    sent.append(("deals", {"id": "9702", "ops_id": "2", "stage": "Shipped", "modified_time": zt(5)}))
    with counting_commits(rt.store.write_engine, rt.ops.engine) as commits:
        responses = post_as_one_batch(gw, sent)
        # One state-store transaction; OnPrintShop's takes one more for the record's second change
        # applied (decided once the first one's result is known), none for the stale ones.
        assert commits(rt.store.write_engine) == 1 and commits(rt.ops.engine) == 2
    # Decided in the order received against what the earlier ones left: an older one is stale.
    assert answers(responses) == [(200, "applied"), (200, "stale"), (200, "applied"), (200, "stale"), (200, "applied")]
    assert gw.order(1)["orders_status_id"] == 4 and gw.order(2)["orders_status_id"] == 4
    assert [comment for _status, comment, _at in gw.history(1)][-2:] == [
        "Zoho CRM: Deal 9701 moved to stage Printing", "Zoho CRM: Deal 9701 moved to stage Shipped"]
    # The record's marker holds the newest time: a retry of an older one later is stale as well.
    retry = gw.post("deals", sent[3][1])
    assert retry.get_json() == {"status": "stale"}
    assert reports.pending_count(rt) == 0 and len(reports.recent(rt)) == 6


def test_a_batch_with_one_refused_delivery_answers_the_others_as_alone(make_app, ops_db_url, state_db_url):
    gw = Gateway(make_app(OPS_DATABASE_URL=ops_db_url, DATABASE_URL=state_db_url))
    rt = gw.rt
    _refuse_order_3(gw)
    try:
        sent = [
            ("deals", {"id": "9711", "ops_id": "1", "stage": "Shipped", "modified_time": zt()}),
            ("deals", {"id": "9713", "ops_id": "3", "stage": "Shipped", "modified_time": zt()}),  # refused
            ("deals", {"id": "9712", "ops_id": "2", "stage": "Printing", "modified_time": zt()}),
            ("deals", {"id": "9714", "ops_id": "99", "stage": "Shipped", "modified_time": zt()}),  # no such order
            ("contacts", {"id": "5711", "ops_id": "1", "email": "ada@example.com", "last_name": "King",
                          "modified_time": zt()}),
            ("deals", {"id": "9713", "ops_id": "3", "stage": "Cancelled", "modified_time": zt(5)}),  # waits behind it
        ]
        with counting_commits(rt.store.write_engine, rt.ops.engine) as commits:
            responses = post_as_one_batch(gw, sent)
            assert commits(rt.store.write_engine) == 1 and commits(rt.ops.engine) == 1
        assert answers(responses) == [(200, "applied"), (202, "accepted"), (200, "applied"), (404, "not_found"),
                                      (200, "applied"), (202, "accepted")]
        assert not rt.ops.recently_unavailable()
        assert (gw.order(1)["orders_status_id"], gw.order(2)["orders_status_id"], gw.order(3)["orders_status_id"]) == (4, 3, 3)
        assert gw.customer(1)["customers_lastname"] == "King"
        with rt.store.engine.connect() as conn:
            refused = conn.execute(sa.text("SELECT attempts, reason FROM gw_inbox WHERE zoho_id = '9713' AND state = 'pending' "
                                           "ORDER BY modified_time")).all()
        assert [row[0] for row in refused] == [1, 0]  # the refusal is a counted attempt; the later one only waits
        assert "retried later" in refused[0][1]
    finally:
        _allow_order_3(gw)
    with rt.store.begin() as conn:
        conn.execute(sa.text("UPDATE gw_inbox SET next_attempt_at = 0"))
    reapply.reapply_pending(rt)
    assert reports.pending_count(rt) == 0 and gw.order(3)["orders_status_id"] == 6  # both applied, in order


@pytest.mark.parametrize("where", ["the inbox rows' INSERT", "the COMMIT"])
def test_a_state_store_failure_mid_batch_answers_503_to_every_delivery(make_app, state_db_url, where, monkeypatch):
    gw = Gateway(make_app(DATABASE_URL=state_db_url))
    rt = gw.rt
    sent = [("deals", {"id": f"972{n}", "ops_id": str(n), "stage": "Order Completed", "modified_time": zt()})
            for n in (1, 2, 3)]
    engine = rt.store.write_engine

    def fail_insert(_conn, _cursor, statement, *_args):
        if statement.lstrip().upper().startswith("INSERT INTO GW_INBOX "):
            raise sa.exc.OperationalError(statement, {}, Exception("the state store went away"))

    def fail_commit(_dbapi_conn):  # the driver's COMMIT fails (the server went away): the transaction is lost
        raise engine.dialect.loaded_dbapi.OperationalError("the state store went away")

    if "INSERT" in where:
        sa.event.listen(engine, "before_cursor_execute", fail_insert)
    else:
        monkeypatch.setattr(engine.dialect, "do_commit", fail_commit)
    try:
        responses = post_as_one_batch(gw, sent)
    finally:
        if "INSERT" in where:
            sa.event.remove(engine, "before_cursor_execute", fail_insert)
        monkeypatch.undo()
    assert [r.status_code for r in responses] == [503, 503, 503]  # none reported 2xx
    assert all(r.get_json()["request_id"] for r in responses)
    assert reports.recent(rt) == []  # nothing recorded, so nothing was promised
    # Zoho's retries: OnPrintShop already has the values (applied, no change), now recorded.
    for _module, params in sent:
        assert gw.post("deals", params).get_json() == {"status": "applied"}
    assert [gw.order(n)["orders_status_id"] for n in (1, 2, 3)] == [5, 5, 5]
    assert {row["outcome"] for row in reports.recent(rt)} == {"applied"} and len(reports.recent(rt)) == 3


def _outage_on_the_second_update(rt):
    """OnPrintShop's connection is lost when the batch's second order UPDATE runs."""
    updates = []

    def lose(_conn, _cursor, statement, *_args):
        if statement.lstrip().upper().startswith("UPDATE ORDERS"):
            updates.append(statement)
            if len(updates) == 2:
                if rt.ops.dialect == "mysql":
                    raise mysql_error(rt.ops.engine, 2013, "Lost connection to MySQL server during query")
                raise sqlite3.OperationalError("database is locked")

    return lose


def test_an_onprintshop_outage_mid_batch_gives_202_and_applies_later(make_app, ops_db_url, state_db_url):
    gw = Gateway(make_app(OPS_DATABASE_URL=ops_db_url, DATABASE_URL=state_db_url))
    rt = gw.rt
    before = gw.snapshot()
    sent = [("deals", {"id": "9731", "ops_id": "1", "stage": "Shipped", "modified_time": zt()}),
            ("deals", {"id": "9732", "ops_id": "2", "stage": "Shipped", "modified_time": zt()}),
            ("deals", {"id": "9731", "ops_id": "1", "stage": "Cancelled", "modified_time": zt(5)}),
            ("deals", {"id": "9733", "ops_id": "3", "stage": "Shipped", "modified_time": zt()})]
    lose = _outage_on_the_second_update(rt)
    sa.event.listen(rt.ops.engine, "before_cursor_execute", lose)
    try:
        responses = post_as_one_batch(gw, sent)
    finally:
        sa.event.remove(rt.ops.engine, "before_cursor_execute", lose)
    # The OnPrintShop transaction was lost whole: the change applied before the outage too.
    assert answers(responses) == [(202, "accepted")] * 4
    assert gw.snapshot() == before
    assert reports.pending_count(rt) == 4
    rt.ops._unavailable_until = 0.0
    reapply.reapply_pending(rt)
    assert reports.pending_count(rt) == 0
    assert [gw.order(n)["orders_status_id"] for n in (1, 2, 3)] == [6, 4, 4]
    assert [comment for _s, comment, _at in gw.history(1)][-2:] == [
        "Zoho CRM: Deal 9731 moved to stage Shipped", "Zoho CRM: Deal 9731 moved to stage Cancelled"]


def test_two_processes_batches_over_the_same_records_end_in_the_newest_state(make_app, ops_db_url, state_db_url):
    """Two gateways (a committer each, as two gunicorn workers) release batches over the same
    three records, queued in different orders: the markers are locked in key order, so neither
    batch deadlocks the other for good, and each record ends with its newest update."""
    gw = Gateway(make_app(OPS_DATABASE_URL=ops_db_url, DATABASE_URL=state_db_url))
    other = make_app(OPS_DATABASE_URL=ops_db_url, DATABASE_URL=state_db_url)
    stages = {1: ("Printing", "Shipped"), 2: ("Order Completed", "Cancelled"), 3: ("Pending", "Order Processing")}
    plans = [(gw.app, [3, 1, 2], 0, 10), (other, [2, 3, 1], 1, 20)]
    committers = [inbox.committer(app.extensions["gateway"]) for app, *_ in plans]
    responses: list = []
    errors: list = []

    def post(app, params):
        try:
            responses.append(app.test_client().post("/webhooks/zoho/deals", data=params,
                                                    headers={"X-Webhook-Token": gw.secret}))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = []
    for committer in committers:
        committer.hold.acquire()
    try:
        for (app, orders, which, offset), committer in zip(plans, committers, strict=True):
            for n, order in enumerate(orders, start=1):
                params = {"id": f"974{order}", "ops_id": str(order), "stage": stages[order][which], "modified_time": zt(offset)}
                thread = threading.Thread(target=post, args=(app, params))
                thread.start()
                threads.append(thread)
                wait_until(lambda c=committer, n=n: c.queued() == n, timeout=30, message="the delivery to be queued")
    finally:
        for committer in committers:
            committer.hold.release()
    for thread in threads:
        thread.join(60)
    assert not errors and len(responses) == 6
    assert {r.status_code for r in responses} == {200}
    assert {r.get_json()["status"] for r in responses} <= {"applied", "stale"}
    names = {name: sid for sid, name in ((1, "Pending"), (2, "Order Processing"), (3, "Printing"), (4, "Shipped"),
                                         (5, "Order Completed"), (6, "Cancelled"))}
    assert [gw.order(order)["orders_status_id"] for order in (1, 2, 3)] == [names[stages[o][1]] for o in (1, 2, 3)]
    assert len(reports.recent(gw.rt)) == 6 and reports.pending_count(gw.rt) == 0


def test_a_batch_of_deals_is_written_together_and_each_answered_as_alone(make_app, ops_db_url, state_db_url):
    gw = Gateway(make_app(OPS_DATABASE_URL=ops_db_url, DATABASE_URL=state_db_url))
    rt = gw.rt
    # Deal 9761 linked to order 1 and 9764 to order 4 (each found by its ops_id, no change made).
    assert gw.post("deals", {"id": "9761", "ops_id": "1", "stage": "Pending", "modified_time": zt()}).status_code == 200
    assert gw.post("deals", {"id": "9764", "ops_id": "4", "stage": "Shipped", "modified_time": zt()}).status_code == 200
    with rt.ops.engine.begin() as conn:  # order 2 changed in OnPrintShop after the Zoho change below
        conn.execute(sa.text("UPDATE orders SET last_modified = :t WHERE orders_id = 2"),
                     {"t": rt.ops.local_from_epoch(BASE + 600)})
    history_before = {n: len(gw.history(n)) for n in range(1, 7)}
    sent = [
        ("deals", {"id": "9761", "stage": "Shipped", "modified_time": zt(10)}),  # by its link
        ("deals", {"id": "9762", "ops_id": "2", "stage": "Cancelled", "modified_time": zt(10)}),  # stale
        ("deals", {"id": "9765", "ops_id": "4", "stage": "Cancelled", "modified_time": zt(10)}),  # order 4 is 9764's
        ("deals", {"id": "9766", "ops_id": "3", "stage": "Printing", "modified_time": zt(10)}),  # already so
        ("deals", {"id": "9767", "ops_id": "5", "payment_status": "Paid", "modified_time": zt(10)}),
        ("deals", {"id": "9768", "ops_id": "6", "stage": "Order Completed", "modified_time": zt(10)}),
    ]
    with contextlib.closing(Statements([rt.ops.engine])) as ops_sql, \
            contextlib.closing(Statements([rt.store.write_engine])) as state_sql, counting_commits(rt.ops.engine) as commits:
        responses = post_as_one_batch(gw, sent)
        assert commits(rt.ops.engine) == 1
    assert answers(responses) == [(200, "applied"), (200, "stale"), (409, "conflict"), (200, "applied"),
                                  (200, "applied"), (200, "applied")]
    assert responses[2].get_json()["parameter"] == "ops_id"
    # The rows locked in one statement and the history rows inserted in one; no savepoint per change.
    statements = [s.upper() for s in ops_sql.seen]
    assert sum(s.startswith("SELECT ORDERS.") for s in statements) == 1
    assert sum(s.startswith("INSERT INTO ORDERS_STATUS_HISTORY") for s in statements) == 1
    assert sum(s.startswith("UPDATE ORDERS") for s in statements) == 3
    assert not any(s.startswith("SAVEPOINT") for s in statements)
    # Whether another Zoho record has the order of each delivery found by its ops_id: one read.
    assert sum(s.upper().startswith("SELECT GW_LINKS.") for s in state_sql.seen) == 1
    orders = {n: gw.order(n) for n in range(1, 7)}
    assert [orders[n]["orders_status_id"] for n in range(1, 7)] == [4, 5, 3, 4, 2, 5]
    assert orders[5]["payment_status"] == "Paid"
    added = {n: gw.history(n)[history_before[n]:] for n in range(1, 7)}
    assert {n: [comment for _s, comment, _at in rows] for n, rows in added.items() if rows} == {
        1: ["Zoho CRM: Deal 9761 moved to stage Shipped"], 6: ["Zoho CRM: Deal 9768 moved to stage Order Completed"]}
    # Each applied change is the gateway's own to the poller (its loop-guard row), as alone.
    assert {(row["zoho_id"], row["outcome"]) for row in reports.recent(rt)} >= {
        ("9761", "applied"), ("9762", "stale"), ("9765", "conflict"), ("9767", "applied"), ("9768", "applied")}
    with rt.store.engine.connect() as conn:
        guarded = {int(r[0]) for r in conn.execute(sa.text("SELECT ops_id FROM gw_loopguard WHERE table_key = 'orders'"))}
    assert {1, 5, 6} <= guarded and 2 not in guarded


def test_a_deal_refused_in_a_batch_written_together_is_retried_alone(make_app, ops_db_url, state_db_url):
    """OnPrintShop refuses one order's UPDATE: the batch's transaction is rolled back whole and
    its changes applied one by one, so only the refused one waits (202) and nothing is written twice."""
    gw = Gateway(make_app(OPS_DATABASE_URL=ops_db_url, DATABASE_URL=state_db_url))
    rt = gw.rt
    _refuse_order_3(gw)
    try:
        sent = [("deals", {"id": f"978{n}", "ops_id": str(n), "stage": "Cancelled", "modified_time": zt()})
                for n in (1, 3, 2)]
        with counting_commits(rt.ops.engine) as commits:
            responses = post_as_one_batch(gw, sent)
            assert commits(rt.ops.engine) == 1
    finally:
        _allow_order_3(gw)
    assert answers(responses) == [(200, "applied"), (202, "accepted"), (200, "applied")]
    assert [gw.order(n)["orders_status_id"] for n in (1, 2, 3)] == [6, 6, 3]
    assert [comment for _s, comment, _at in gw.history(1)].count("Zoho CRM: Deal 9781 moved to stage Cancelled") == 1
    assert reports.pending_count(rt) == 1 and not rt.ops.recently_unavailable()


def test_a_deal_whose_order_onprintshop_holds_waits_once_and_alone(make_app, ops_db_url, state_db_url, monkeypatch):
    """OnPrintShop's application holds order 1: the batch written together does not wait for it
    (its rows are locked with NOWAIT), so the change of order 1 waits once, alone, and is stored
    (202) while the others are applied: the batch is answered after one lock wait, not two."""
    from gateway.ops.database import backend as database

    if not ops_db_url.startswith("mysql"):
        pytest.skip("row locks: SQLite locks the whole database")
    monkeypatch.setattr(database, "LOCK_WAIT_SECONDS", 2)
    gw = Gateway(make_app(OPS_DATABASE_URL=ops_db_url, DATABASE_URL=state_db_url))
    holder = sa.create_engine(ops_db_url)
    conn = holder.connect()
    try:
        conn.execute(sa.text("SELECT * FROM orders WHERE orders_id = 1 FOR UPDATE"))
        sent = [("deals", {"id": f"979{n}", "ops_id": str(n), "stage": "Cancelled", "modified_time": zt()}) for n in (2, 1, 3)]
        started = time.monotonic()
        responses = post_as_one_batch(gw, sent)
        took = time.monotonic() - started
    finally:
        conn.rollback()
        conn.close()
        holder.dispose()
    assert answers(responses) == [(200, "applied"), (202, "accepted"), (200, "applied")]
    assert took < 2 * 2 - 0.5, f"the batch took {took:.1f} s: it waited for order 1 twice"
    assert [gw.order(n)["orders_status_id"] for n in (1, 2, 3)] == [1, 6, 6]
    assert not gw.rt.ops.recently_unavailable() and reports.pending_count(gw.rt) == 1


def test_a_batch_of_deals_and_contacts_writes_the_deals_together_and_each_contact_alone(make_app, ops_db_url,
                                                                                          state_db_url):
    gw = Gateway(make_app(OPS_DATABASE_URL=ops_db_url, DATABASE_URL=state_db_url))
    rt = gw.rt
    sent = [
        ("deals", {"id": "9751", "ops_id": "1", "stage": "Shipped", "modified_time": zt()}),
        ("contacts", {"id": "5751", "ops_id": "1", "email": "ada@example.com", "last_name": "King", "modified_time": zt()}),
        ("deals", {"id": "9752", "ops_id": "2", "stage": "Printing", "modified_time": zt()}),
        ("contacts", {"id": "5752", "ops_id": "2", "email": "grace@example.com", "phone": "+1 202 555 0100",
                      "modified_time": zt()}),
        ("deals", {"id": "9753", "ops_id": "3", "payment_status": "Unpaid", "modified_time": zt()}),
    ]
    with contextlib.closing(Statements([rt.ops.engine])) as ops_sql, counting_commits(rt.ops.engine) as commits:
        responses = post_as_one_batch(gw, sent)
        assert commits(rt.ops.engine) == 1
    assert answers(responses) == [(200, "applied")] * 5
    assert [gw.order(n)["orders_status_id"] for n in (1, 2, 3)] == [4, 3, 3]
    assert gw.order(3)["payment_status"] == "Unpaid"
    assert gw.customer(1)["customers_lastname"] == "King" and gw.customer(2)["customers_telephone"] == "+1 202 555 0100"
    # The three orders locked by one statement, their history rows inserted by one; a savepoint
    # for the Deals together and one for each Contact.
    statements = [s.upper() for s in ops_sql.seen]
    assert sum(s.startswith("SELECT ORDERS.") for s in statements) == 1
    assert sum(s.startswith("INSERT INTO ORDERS_STATUS_HISTORY") for s in statements) == 1
    assert sum(s.startswith("SAVEPOINT") for s in statements) == 3


def test_a_deal_refused_in_a_mixed_batch_rolls_back_only_the_deals_written_together(make_app, ops_db_url,
                                                                                     state_db_url):
    gw = Gateway(make_app(OPS_DATABASE_URL=ops_db_url, DATABASE_URL=state_db_url))
    rt = gw.rt
    _refuse_order_3(gw)
    try:
        sent = [
            ("contacts", {"id": "5761", "ops_id": "1", "email": "ada@example.com", "last_name": "King",
                          "modified_time": zt()}),
            ("deals", {"id": "9761", "ops_id": "1", "stage": "Cancelled", "modified_time": zt()}),
            ("deals", {"id": "9763", "ops_id": "3", "stage": "Cancelled", "modified_time": zt()}),  # refused
            ("deals", {"id": "9762", "ops_id": "2", "stage": "Cancelled", "modified_time": zt()}),
        ]
        with counting_commits(rt.ops.engine) as commits:
            responses = post_as_one_batch(gw, sent)
            assert commits(rt.ops.engine) == 1
    finally:
        _allow_order_3(gw)
    assert answers(responses) == [(200, "applied"), (200, "applied"), (202, "accepted"), (200, "applied")]
    assert [gw.order(n)["orders_status_id"] for n in (1, 2, 3)] == [6, 6, 3]
    assert gw.customer(1)["customers_lastname"] == "King"
    assert [comment for _s, comment, _at in gw.history(1)].count("Zoho CRM: Deal 9761 moved to stage Cancelled") == 1
    assert reports.pending_count(rt) == 1 and not rt.ops.recently_unavailable()
