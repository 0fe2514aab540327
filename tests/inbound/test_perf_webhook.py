"""What a webhook delivery costs, and what the cheaper path must still do.

- An update for a known record costs at most a budget of SQL statements (each is a round trip):
  on MariaDB/MySQL the record's lock, the earlier pending row and the link are one statement; a
  Contact update that leaves the e-mail alone takes no savepoint. The budgets are ceilings: a
  change that saves a statement passes, one that adds a statement fails.
- Read together with the lock, the earlier pending row and the link are still read after the
  lock is granted: a delivery waiting for its record sees what the holder committed.
- The cheaper security headers and session handling answer as before.
"""
from __future__ import annotations

import contextlib
import threading
import time

import pytest
import sqlalchemy as sa

from gateway.inbound import reports, secrets
from gateway.ops.database import backend as database
from gateway.web.security import CSP
from tests.conftest import LockWaiters, wait_until
from tests.inbound.conftest import Gateway
from gateway.state import tables

# The most statements one delivery for a known record may cost (ceilings, not exact counts: fewer
# is fine, one more fails). Per dialect of the state store: the record's lock with its earlier
# pending row and link (one statement, two on PostgreSQL), the loop guard, the record's last
# applied update, the inbox row; SQLite's BEGIN IMMEDIATE is a statement of its own.
STATE_STATEMENT_BUDGET = {"mysql": 4, "postgresql": 5, "sqlite": 5}
# OnPrintShop: the order locked, updated, and its status history row; the customer locked, the
# e-mail checked, the customer updated (+ BEGIN IMMEDIATE on SQLite).
OPS_STATEMENT_BUDGET = {"mysql": 3, "sqlite": 4}


class Statements:
    def __init__(self, engines):
        self.seen: list[str] = []
        self._engines = list({id(e): e for e in engines}.values())
        for engine in self._engines:
            sa.event.listen(engine, "before_cursor_execute", self._count)

    def _count(self, _conn, _cursor, statement, *_args):
        self.seen.append(" ".join(statement.split())[:90])

    def close(self):
        for engine in self._engines:
            sa.event.remove(engine, "before_cursor_execute", self._count)


def test_a_deal_update_for_a_known_record_stays_within_its_statement_budget(make_app, ops_db_url, state_db_url,
                                                                             monkeypatch):
    # Nothing time-based may add a read during the counted delivery (the cached secret and statuses).
    monkeypatch.setattr(secrets, "CACHE_SECONDS", 3600.0)
    monkeypatch.setattr(database, "STATUS_CACHE_SECONDS", 3600.0)
    gw = Gateway(make_app(OPS_DATABASE_URL=ops_db_url, DATABASE_URL=state_db_url))
    rt = gw.rt
    base_ms = (int(time.time()) - 600) * 1000
    first = gw.post("deals", {"id": "9801", "ops_id": "1", "stage": "Printing", "modified_time": str(base_ms)})
    assert first.status_code == 200 and first.get_json() == {"status": "applied"}

    _post_counting_statements(gw, "deals", {"id": "9801", "ops_id": "1", "stage": "Shipped", "payment_status": "Paid",
                                            "modified_time": str(base_ms + 60_000)})
    # ... and it did all it did before: the order, its history, the inbox row, the loop guard.
    order = gw.order(1)
    assert (order["orders_status_id"], order["payment_status"]) == (4, "Paid")
    assert gw.history(1)[-1][1] == "Zoho CRM: Deal 9801 moved to stage Shipped"
    assert reports.recent(rt, limit=1)[0]["outcome"] == "applied"
    with rt.store.engine.connect() as conn:
        guarded = conn.execute(sa.text("SELECT COUNT(*) FROM gw_loopguard WHERE table_key = 'orders' AND ops_id = 1")).scalar()
    assert guarded == 2


def test_a_contact_update_leaving_the_email_alone_stays_within_its_statement_budget(make_app, ops_db_url,
                                                                                     state_db_url, monkeypatch):
    monkeypatch.setattr(secrets, "CACHE_SECONDS", 3600.0)
    gw = Gateway(make_app(OPS_DATABASE_URL=ops_db_url, DATABASE_URL=state_db_url))
    base_ms = (int(time.time()) - 600) * 1000
    sent = {"id": "5801", "ops_id": "2", "email": "grace@example.com", "first_name": "Grace", "last_name": "Hopper"}
    assert gw.post("contacts", {**sent, "modified_time": str(base_ms)}).status_code == 200

    _post_counting_statements(gw, "contacts", {**sent, "first_name": "Amazing Grace", "phone": "+1 202 555 0199",
                                               "modified_time": str(base_ms + 60_000)})
    customer = gw.customer(2)
    assert (customer["customers_firstname"], customer["customers_telephone"], customer["customers_email_address"]) == (
        "Amazing Grace", "+1 202 555 0199", "grace@example.com")


def _post_counting_statements(gw, module: str, params: dict) -> None:
    """Post one delivery, check it was applied within the statement budget of each database."""
    rt = gw.rt
    state = Statements([rt.store.engine, rt.store.write_engine])
    ops = Statements([rt.ops.engine])
    try:
        answer = gw.post(module, params)
    finally:
        state.close()
        ops.close()
    assert answer.status_code == 200 and answer.get_json() == {"status": "applied"}
    assert len(state.seen) <= STATE_STATEMENT_BUDGET[rt.store.dialect], state.seen
    assert len(ops.seen) <= OPS_STATEMENT_BUDGET[rt.ops.dialect], ops.seen


@contextlib.contextmanager
def holding_the_record(rt, zoho_id: str):
    """A state-store transaction holding the Deal's lock, as a delivery deciding it does: its
    gw_inbox_applied row FOR UPDATE (SQLite: BEGIN IMMEDIATE, the one write lock)."""
    with rt.store.write_engine.connect() as conn:
        if rt.store.dialect == "sqlite":
            conn = conn.execution_options(sqlite_begin="IMMEDIATE")
        with conn.begin():
            if rt.store.dialect != "sqlite":
                locked = conn.execute(sa.text("SELECT zoho_id FROM gw_inbox_applied WHERE module = 'Deals' AND zoho_id = :z "
                                              "FOR UPDATE"), {"z": zoho_id}).first()
                assert locked is not None
            yield conn


def _post_in_background(gw, holder, params):
    """Post a delivery in another thread; returns once it is observably waiting for the lock `holder`
    (the connection holding the record) has."""
    answer: dict = {}

    def post():
        client = gw.app.test_client()
        answer["response"] = client.post("/webhooks/zoho/deals", data=params, headers={"X-Webhook-Token": gw.secret})

    with LockWaiters(holder) as waiters:
        thread = threading.Thread(target=post)
        thread.start()
        wait_until(lambda: waiters.count() or not thread.is_alive(), timeout=30,
                   message="the delivery to wait for its record's lock")
        assert thread.is_alive() and waiters.count(), "the delivery should be waiting for its record's lock"
    return thread, answer


def _deal_applied_once(make_app, state_db_url, zoho_id: str):
    """A gateway where Deal `zoho_id` was applied to order 1 ten minutes ago (so it is linked);
    returns it and that time in epoch seconds."""
    gw = Gateway(make_app(DATABASE_URL=state_db_url))
    base = int(time.time()) - 600
    assert gw.post("deals", {"id": zoho_id, "ops_id": "1", "payment_status": "Paid",
                             "modified_time": str(base * 1000)}).status_code == 200
    return gw, base


def test_a_delivery_waiting_for_its_record_sees_the_earlier_update_the_holder_stored(make_app, state_db_url):
    gw, base = _deal_applied_once(make_app, state_db_url, "9802")
    with holding_the_record(gw.rt, "9802") as conn:
        # The holder stores an earlier update of the record, pending (OnPrintShop was away for it).
        now = time.time()
        conn.execute(tables.inbox_table.insert(), {
            "received_at": now, "source": "webhook", "module": "Deals", "zoho_id": "9802", "ops_id_hint": 1,
            "modified_time": float(base + 60), "time_given": True, "fields": '{"payment_status": "Unpaid"}',
            "fingerprint": "f" * 64, "state": "pending", "attempts": 0, "next_attempt_at": now + 3600,
        })
        thread, answer = _post_in_background(gw, conn, {"id": "9802", "ops_id": "1", "stage": "Shipped",
                                                        "modified_time": str((base + 120) * 1000)})
    thread.join(30)
    response = answer["response"]
    # Applied only after the earlier one: kept pending, OnPrintShop untouched for now.
    assert response.status_code == 202 and response.get_json() == {"status": "accepted"}
    assert gw.order(1)["orders_status_id"] == 1
    assert reports.pending_count(gw.rt) == 2


def test_a_delivery_waiting_for_its_record_uses_the_link_the_holder_saved(make_app, state_db_url):
    gw, base = _deal_applied_once(make_app, state_db_url, "9803")
    with holding_the_record(gw.rt, "9803") as conn:
        # The holder links the Deal to another order (a delivery found by its ops_id saves the link).
        conn.execute(sa.text("UPDATE gw_links SET ops_id = 2 WHERE module = 'Deals' AND zoho_id = '9803'"))
        thread, answer = _post_in_background(gw, conn, {"id": "9803", "stage": "Shipped",  # no ops_id: found by the link
                                                        "modified_time": str((base + 60) * 1000)})
    thread.join(30)
    response = answer["response"]
    assert response.status_code == 200 and response.get_json() == {"status": "applied"}
    assert (gw.order(2)["orders_status_id"], gw.order(1)["orders_status_id"]) == (4, 1)


@pytest.mark.parametrize("env", ["development", "production"])
def test_a_webhook_answer_has_each_security_header_once_and_no_session(make_app, env, tmp_path):
    settings = {}
    if env == "production":
        from cryptography.fernet import Fernet

        settings = dict(GATEWAY_ENV="production", SECRET_KEY="a production secret key for the tests only",
                        GATEWAY_FERNET_KEYS=Fernet.generate_key().decode())
    gw = Gateway(make_app(**settings))
    response = gw.post("deals", {"id": "9804", "ops_id": "1", "payment_status": "Paid"})
    assert response.status_code == 200
    headers = response.headers
    assert headers.getlist("Content-Security-Policy") == [CSP]
    assert headers.getlist("X-Frame-Options") == ["DENY"]
    assert headers.getlist("X-Content-Type-Options") == ["nosniff"]
    assert headers.getlist("Referrer-Policy") == ["same-origin"]
    assert "Cache-Control" not in headers  # only admin pages are no-store
    hsts = headers.getlist("Strict-Transport-Security")
    assert hsts == (["max-age=31536000; includeSubDomains"] if env == "production" else [])
    assert "Set-Cookie" not in headers and "Cookie" not in headers.get("Vary", "")
