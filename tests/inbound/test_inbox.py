"""The inbox and its neighbours: loop guard, re-applier thread, mapping-driven writes, give-up."""
from __future__ import annotations

import datetime as dt
import threading
import time

import pytest
import sqlalchemy as sa

from gateway.ops.database import writes
from gateway.inbound import inbox, parse, reapply, reports
from gateway.sync import loopguard
from tests.conftest import wait_until
from tests.inbound.conftest import Gateway
from gateway.state import tables

BASE = int(time.time()) - 3600


def zt(offset: int = 0) -> str:
    return str((BASE + offset) * 1000)


def test_loop_guard_tells_our_writes_from_the_stores(gw):
    r = gw.post("deals", {"id": "9301", "ops_id": "2", "stage": "Shipped", "modified_time": zt()})
    assert r.status_code == 200
    written = gw.order(2)["last_modified"]
    with gw.rt.store.engine.connect() as conn:
        assert loopguard.written_by_gateway(conn, "orders", 2, written)
        assert loopguard.written_by_gateway(conn, "orders", "2", str(written))  # text form, as some drivers give it
        assert not loopguard.written_by_gateway(conn, "orders", 1, written)   # another order
        assert not loopguard.written_by_gateway(conn, "customers", 2, written)
    # the store edits the order afterwards: its new last_modified is not ours
    later = dt.datetime.fromisoformat(str(written)) + dt.timedelta(seconds=5)
    with gw.rt.ops.engine.begin() as conn:
        conn.execute(sa.text("UPDATE orders SET payment_status = 'Paid', last_modified = :t WHERE orders_id = 2"), {"t": later})
    with gw.rt.store.engine.connect() as conn:
        assert not loopguard.written_by_gateway(conn, "orders", 2, later)
    # a delivery that changes nothing writes nothing, so records nothing new
    before = gw.snapshot()
    r = gw.post("deals", {"id": "9301", "stage": "shipped", "modified_time": zt(10)})
    assert r.get_json() == {"status": "applied"} and gw.snapshot() == before


def test_background_reapplier_applies_after_the_database_returns(make_app, tmp_path, monkeypatch):
    monkeypatch.setattr(reapply, "POLL_SECONDS", 0.05)
    monkeypatch.setattr(reapply, "MIN_BACKOFF", 0.05)
    monkeypatch.setattr(reapply, "MAX_BACKOFF", 0.2)
    folder = tmp_path / "later"
    app = make_app(OPS_DATABASE_URL=f"sqlite:///{folder}/ops.db")
    rt = app.extensions["gateway"]
    update = parse.validate("Deals", {"id": "9302", "ops_id": "1", "stage": "Printing", "modified_time": zt()},
                            rt.ops.mapping, "UTC")
    assert inbox.receive(rt, "Deals", update, source="catchup").status == "accepted"
    passes = []
    real_pass = reapply.reapply_pending

    def counted_pass(*args, **kwargs):
        result = real_pass(*args, **kwargs)
        passes.append(result)
        return result

    monkeypatch.setattr(reapply, "reapply_pending", counted_pass)
    stop = threading.Event()
    thread = threading.Thread(target=reapply.run, args=(rt, stop), daemon=True)
    thread.start()
    try:
        # Backing off against a database that is not there: two passes found it away (the second
        # after a back-off), and the row is still pending.
        wait_until(lambda: sum(1 for p in passes if p["unavailable"]) >= 2, timeout=10,
                   message=lambda: f"two passes of the re-applier to find OnPrintShop away: {passes}")
        assert reports.pending_count(rt) == 1
        folder.mkdir()
        Gateway(make_app(OPS_DATABASE_URL=f"sqlite:///{folder}/ops.db"))  # the demo database appears
        wait_until(lambda: reports.pending_count(rt) == 0, timeout=10, message="the row applied once the database is there")
    finally:
        stop.set()
        thread.join(5)
    assert reports.recent(rt)[0]["outcome"] == "applied" and reports.recent(rt)[0]["source"] == "catchup"


def test_a_row_that_keeps_failing_is_given_up_visibly(gw_sqlite, monkeypatch):
    gw = gw_sqlite
    monkeypatch.setattr(inbox, "MAX_ATTEMPTS", 2)

    def broken(*_args, **_kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(writes, "apply_update", broken)
    r = gw.post("deals", {"id": "9303", "ops_id": "1", "stage": "Printing", "modified_time": zt()})
    assert r.status_code == 202  # stored; it is our failure, not the sender's
    with gw.rt.store.begin() as conn:
        conn.execute(tables.inbox_table.update().values(next_attempt_at=0))
    reapply.reapply_pending(gw.rt)
    row = reports.recent(gw.rt)[0]
    assert row["outcome"] == "failed" and "gave up after 2 attempts" in row["reason"]
    assert reports.pending_count(gw.rt) == 0


def test_renamed_tables_and_columns_from_the_mapping_file(make_app, tmp_path):
    instance = tmp_path / "instance"
    instance.mkdir()
    (instance / "mapping.toml").write_text(
        '[tables]\norders = "shop_orders"\ncustomers = "shop_customers"\n'
        '[columns.orders]\norders_status_id = "status"\nlast_modified = "updated"\n'
        '[columns.customers]\ncustomers_firstname = "fname"\n'
        '[status_aliases]\n"Won" = "Order Completed"\n'
    )
    gw = Gateway(make_app())
    r = gw.post("deals", {"id": "9304", "ops_id": "1", "stage": "won", "modified_time": zt()})
    assert r.status_code == 200, r.get_json()
    assert gw.query("SELECT status FROM shop_orders WHERE orders_id = 1") == [(5,)]
    assert gw.post("deals", {"id": "9304", "stage": "Closed Won", "modified_time": zt(1)}).status_code == 422
    r = gw.post("contacts", {"id": "5304", "ops_id": "1", "email": "ada@example.com", "first_name": "Ada K.",
                             "modified_time": zt()})
    assert r.status_code == 200
    assert gw.query("SELECT fname FROM shop_customers WHERE customers_id = 1") == [("Ada K.",)]


def test_a_latin1_store_refuses_what_it_cannot_store(make_app, tmp_path):
    instance = tmp_path / "instance"
    instance.mkdir()
    (instance / "mapping.toml").write_text('[database]\ncharset = "latin1"\n')
    gw = Gateway(make_app())
    r = gw.post("contacts", {"id": "5305", "ops_id": "1", "email": "ada@example.com", "first_name": "Zoë"})
    assert r.status_code == 200
    r = gw.post("contacts", {"id": "5305", "ops_id": "1", "email": "ada@example.com", "first_name": "李"})
    assert r.status_code == 422 and r.get_json()["parameter"] == "first_name"


def test_rate_limit_uses_the_real_client_address_behind_the_proxy(make_app):
    gw = Gateway(make_app(RATELIMIT_ENABLED=True, GATEWAY_WEBHOOK_RATE_LIMIT="2 per minute", GATEWAY_PROXY_HOPS=1))

    def post(address):  # only refused requests count: these carry a wrong secret
        return gw.post("deals", {"id": "9306", "ops_id": "1", "payment_status": "Paid"}, token="wrong",
                       headers={"X-Forwarded-For": address}).status_code

    assert [post("203.0.113.5"), post("203.0.113.5"), post("203.0.113.5")] == [401, 401, 429]
    assert post("198.51.100.7") == 401  # another client behind the same proxy has its own count


@pytest.mark.parametrize("source", ["webhook", "notify", "catchup"])
def test_receive_records_its_source(gw_sqlite, source):
    rt = gw_sqlite.rt
    update = parse.validate("Contacts", {"id": "5306", "ops_id": "3", "email": "soren@example.dk", "phone": ""}, rt.ops.mapping, "UTC")
    outcome = inbox.receive(rt, "Contacts", update, source=source)
    assert (outcome.status, outcome.http_status) == ("applied", 200)
    assert reports.recent(rt)[0]["source"] == source


def _deadlock() -> sa.exc.OperationalError:
    return sa.exc.OperationalError("INSERT …", {}, Exception(1213, "Deadlock found when trying to get lock"))


def test_a_state_store_error_while_applying_is_never_answered_2xx(gw_sqlite, monkeypatch):
    gw = gw_sqlite

    def state_store_fails(*_args, **_kwargs):
        raise sa.exc.OperationalError("INSERT INTO gw_loopguard …", {}, Exception("disk I/O error"))

    monkeypatch.setattr(loopguard, "record", state_store_fails)
    params = {"id": "9307", "ops_id": "1", "stage": "Printing", "modified_time": zt()}
    r = gw.post("deals", params)
    assert r.status_code == 503 and r.get_json()["request_id"]
    assert reports.recent(gw.rt) == []  # nothing recorded, so nothing was promised
    monkeypatch.undo()
    r = gw.post("deals", params)  # Zoho's retry
    assert r.status_code == 200 and r.get_json() == {"status": "applied"}
    assert gw.order(1)["orders_status_id"] == 3


def deadlock_once(monkeypatch, name: str, module=inbox) -> list:
    """Make `module.<name>` fail once with a deadlock, then behave; returns the list of its calls."""
    real = getattr(module, name)
    calls = []

    def flaky(*args):
        calls.append(1)
        if len(calls) == 1:
            raise _deadlock()
        return real(*args)

    monkeypatch.setattr(module, name, flaky)
    return calls


def test_a_state_store_deadlock_is_retried_as_a_whole(gw_sqlite, monkeypatch):
    gw = gw_sqlite
    calls = deadlock_once(monkeypatch, "_receive_once")
    r = gw.post("deals", {"id": "9308", "ops_id": "1", "stage": "Shipped", "modified_time": zt()})
    assert r.status_code == 200 and len(calls) == 2
    assert [row["outcome"] for row in reports.recent(gw.rt)] == ["applied"]


def test_an_onprintshop_deadlock_is_retried(gw_sqlite, monkeypatch):
    gw = gw_sqlite
    calls = deadlock_once(monkeypatch, "apply_update", writes)
    r = gw.post("deals", {"id": "9309", "ops_id": "1", "stage": "Shipped", "modified_time": zt()})
    assert r.status_code == 200 and len(calls) == 2
    assert gw.order(1)["orders_status_id"] == 4


def test_loop_guard_record_is_idempotent_on_every_state_store(make_app, state_db_url):
    rt = make_app(DATABASE_URL=state_db_url).extensions["gateway"]
    moment = dt.datetime(2026, 11, 27, 10, 15, 30, 123456)
    for _ in range(2):  # a re-apply writes the same change again
        with rt.store.begin() as conn:
            loopguard.record(conn, "customers", 7, moment)
    with rt.store.engine.connect() as conn:
        assert loopguard.written_by_gateway(conn, "customers", 7, dt.datetime(2026, 11, 27, 10, 15, 30))
        assert loopguard.written_by_gateway(conn, "customers", 7, "2026-11-27 10:15:30.000000")
        assert not loopguard.written_by_gateway(conn, "orders", 7, moment)
        assert conn.execute(sa.select(sa.func.count()).select_from(tables.loopguard_table)).scalar() == 1
    with rt.store.begin() as conn:
        assert loopguard.purge(conn, time.time() + 1) == 1


def test_a_row_locked_by_onprintshop_gets_202_then_is_applied(make_app, ops_db_url, monkeypatch):
    """OnPrintShop's own application holds the order row: the webhook does not hang, it answers
    202 within the query timeout, and the update is applied once the lock is gone."""
    from gateway.ops.database import backend as database

    monkeypatch.setattr(database, "QUERY_TIMEOUT", 1)
    monkeypatch.setattr(database, "UNAVAILABLE_PAUSE", 0.0)
    gw = Gateway(make_app(OPS_DATABASE_URL=ops_db_url))
    other = sa.create_engine(ops_db_url)
    conn = other.connect()
    try:
        if other.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            conn.exec_driver_sql("UPDATE orders SET payment_status = 'Paid' WHERE orders_id = 1")
        else:
            conn.execute(sa.text("SELECT * FROM orders WHERE orders_id = 1 FOR UPDATE"))
        started = time.monotonic()
        r = gw.post("deals", {"id": "9310", "ops_id": "1", "stage": "Shipped", "modified_time": zt()})
        assert r.status_code == 202 and r.get_json() == {"status": "accepted"}
        assert time.monotonic() - started < 8
    finally:
        conn.rollback()
        conn.close()
        other.dispose()
    reapply.reapply_pending(gw.rt)
    assert gw.order(1)["orders_status_id"] == 4
    assert reports.recent(gw.rt)[0]["outcome"] == "applied"


# -- the loop guard survives a state store that failed after OnPrintShop committed -------------------
GUARDED = {
    "deals": ("orders", {"id": "9320", "ops_id": "1", "stage": "Shipped"}, lambda gw: gw.order(1)["orders_status_id"] == 4),
    "contacts": ("customers", {"id": "5320", "ops_id": "2", "email": "grace@example.com", "last_name": "Murray Hopper"},
                 lambda gw: gw.customer(2)["customers_lastname"] == "Murray Hopper"),
}


def _fail_first_loop_guard_write(monkeypatch, error) -> list:
    real = loopguard.record
    calls = []

    def flaky(*args):
        calls.append(args)
        if len(calls) == 1:
            raise error
        return real(*args)

    monkeypatch.setattr(loopguard, "record", flaky)
    return calls


@pytest.mark.parametrize("module", sorted(GUARDED))
@pytest.mark.parametrize("failure", ["deadlock, rerun at once", "503, retried by Zoho"])
def test_a_delivery_applied_again_after_a_state_store_failure_keeps_its_loop_guard(
        make_app, ops_db_url, state_db_url, monkeypatch, module, failure):
    """OnPrintShop committed, then the state store failed to record the outcome and the loop guard:
    the same delivery applied again finds nothing to change, yet records the guard, so the change
    poller does not push Zoho's own values back to Zoho."""
    from gateway.outbound import poller, queue

    gw = Gateway(make_app(OPS_DATABASE_URL=ops_db_url, DATABASE_URL=state_db_url))
    rt = gw.rt
    table, params, written = GUARDED[module]
    start = rt.ops.now_local() - dt.timedelta(minutes=5)
    for key in ("customers", "orders"):
        poller.set_watermark(rt, key, start, 0)
    params = {**params, "modified_time": str((int(time.time()) - 30) * 1000)}

    if failure.startswith("deadlock"):
        calls = _fail_first_loop_guard_write(monkeypatch, _deadlock())
        r = gw.post(module, params)
        assert len(calls) == 2  # the whole transaction ran again, and recorded the guard that time
    else:
        _fail_first_loop_guard_write(
            monkeypatch, sa.exc.OperationalError("INSERT INTO gw_loopguard …", {}, Exception("disk I/O error")))
        assert gw.post(module, params).status_code == 503
        r = gw.post(module, params)  # Zoho's retry
    assert r.status_code == 200 and r.get_json() == {"status": "applied"}
    assert written(gw)
    ops_id = int(params["ops_id"])
    last_modified = (gw.order(ops_id) if table == "orders" else gw.customer(ops_id))["last_modified"]
    with rt.store.engine.connect() as conn:
        assert loopguard.written_by_gateway(conn, table, ops_id, last_modified)
    assert poller.poll_once(rt, settle=0) == {"customers": 0, "orders": 0}
    assert queue.pending_ids(rt, "Deals" if table == "orders" else "Contacts", [ops_id]) == set()


def test_a_no_change_delivery_at_another_time_records_no_loop_guard(gw):
    """OnPrintShop changed the order itself (its own time) to the values Zoho then sends: nothing
    is written, and the store's change is not taken for the gateway's."""
    own = gw.rt.ops.now_local().replace(microsecond=0) - dt.timedelta(seconds=40)
    with gw.rt.ops.engine.begin() as conn:
        conn.execute(sa.text("UPDATE orders SET orders_status_id = 4, last_modified = :t WHERE orders_id = 1"), {"t": own})
    r = gw.post("deals", {"id": "9321", "ops_id": "1", "stage": "Shipped", "modified_time": str((int(time.time()) - 30) * 1000)})
    assert r.get_json() == {"status": "applied"}
    with gw.rt.store.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(tables.loopguard_table)).scalar() == 0
