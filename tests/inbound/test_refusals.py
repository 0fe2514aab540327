"""A record OnPrintShop refuses blocks only itself: the database is not taken for "down", the
refused delivery is retried (counted) and then given up visibly, other records keep being applied."""
from __future__ import annotations

import time

import pytest
import sqlalchemy as sa

from gateway.ops.database import writes
from gateway.inbound import inbox, reapply, reports
from tests.inbound.conftest import Gateway
from tests.inbound.test_retries import _reapply_until_settled
from gateway.state import tables

BASE = int(time.time()) - 3600


def zt(offset: int = 0) -> str:
    return str((BASE + offset) * 1000)


# -- 2. a record OnPrintShop refuses -----------------------------------------------------------------
def _refuse_order_3(gw) -> None:
    """A trigger in OnPrintShop's database refuses any change to order 3 (a per-row refusal,
    raised as OperationalError by both drivers: MariaDB's SIGNAL is error 1644; SQLite's own
    RAISE() comes as IntegrityError, so its trigger fails at run time with an OperationalError)."""
    with gw.rt.ops.engine.begin() as conn:
        if gw.rt.ops.dialect == "mysql":
            conn.exec_driver_sql("DROP TRIGGER IF EXISTS gw_test_refuse")
            conn.exec_driver_sql(
                "CREATE TRIGGER gw_test_refuse BEFORE UPDATE ON orders FOR EACH ROW "
                "BEGIN IF NEW.orders_id = 3 THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'order 3 is locked by accounting'; "
                "END IF; END")
        else:
            conn.exec_driver_sql(
                "CREATE TRIGGER gw_test_refuse BEFORE UPDATE ON orders WHEN NEW.orders_id = 3 "
                "BEGIN SELECT json('order 3 is locked by accounting'); END")  # a runtime error: "malformed JSON"


def _allow_order_3(gw) -> None:
    with gw.rt.ops.engine.begin() as conn:
        conn.exec_driver_sql("DROP TRIGGER IF EXISTS gw_test_refuse")


def test_a_record_onprintshop_refuses_blocks_only_itself(make_app, ops_db_url, state_db_url, monkeypatch):
    monkeypatch.setattr(inbox, "MAX_ATTEMPTS", 3)
    gw = Gateway(make_app(OPS_DATABASE_URL=ops_db_url, DATABASE_URL=state_db_url))
    _refuse_order_3(gw)
    try:
        r = gw.post("deals", {"id": "9403", "ops_id": "3", "stage": "Shipped", "modified_time": zt()})
        assert r.status_code == 202 and r.get_json() == {"status": "accepted"}  # stored: retried, then given up visibly
        assert not gw.rt.ops.recently_unavailable()  # the database answered: it is not "down"
        # a healthy record right after is applied at once
        r = gw.post("deals", {"id": "9404", "ops_id": "1", "stage": "Printing", "modified_time": zt()})
        assert r.get_json() == {"status": "applied"} and gw.order(1)["orders_status_id"] == 3
        # a later change of the refused record waits behind it (its order is kept)
        assert gw.post("deals", {"id": "9403", "ops_id": "3", "stage": "Cancelled", "modified_time": zt(5)}).status_code == 202
        # another record accepted while the refused one is pending is applied by the same passes
        gw.rt.ops.mark_unavailable(600)
        assert gw.post("deals", {"id": "9405", "ops_id": "2", "stage": "Shipped", "modified_time": zt()}).status_code == 202
        gw.rt.ops._unavailable_until = 0.0
        results = _reapply_until_settled(gw.rt)
        assert not any(result["unavailable"] for result in results)
        assert gw.order(2)["orders_status_id"] == 4
        assert reports.pending_count(gw.rt) == 0
        outcomes = {(row["zoho_id"], row["outcome"]) for row in reports.recent(gw.rt)}
        assert outcomes == {("9403", "failed"), ("9404", "applied"), ("9405", "applied")}
        failed = [row for row in reports.recent(gw.rt) if row["outcome"] == "failed"]
        assert len(failed) == 2 and all("gave up after 3 attempts" in row["reason"] for row in failed)
        assert gw.order(3)["orders_status_id"] == 3  # still Printing: nothing of the refused rows written
    finally:
        _allow_order_3(gw)
    r = gw.post("deals", {"id": "9403", "ops_id": "3", "stage": "Shipped", "modified_time": zt(10)})
    assert r.get_json() == {"status": "applied"} and gw.order(3)["orders_status_id"] == 4


def _mysql_error(errno: int, text: str) -> sa.exc.OperationalError:
    return sa.exc.OperationalError("UPDATE orders …", {}, Exception(errno, text))


@pytest.mark.parametrize("errno, text, kind", [
    (2003, "Can't connect to MySQL server on '127.0.0.1'", "unavailable"),
    (2013, "Lost connection to MySQL server during query", "unavailable"),
    (2006, "MySQL server has gone away", "unavailable"),
    (1040, "Too many connections", "unavailable"),
    (1205, "Lock wait timeout exceeded; try restarting transaction", "busy"),
    (1213, "Deadlock found when trying to get lock", "busy"),
    (1644, "order 3 is locked by accounting", "refused"),
    (3819, "Check constraint 'payment' is violated", "refused"),
])
def test_onprintshop_errors_are_told_apart(gw_sqlite, errno, text, kind):
    assert gw_sqlite.rt.ops.failure_kind(_mysql_error(errno, text)) == kind


def test_a_locked_sqlite_onprintshop_database_is_unavailable_as_a_whole(gw_sqlite):
    """SQLite's lock is the whole database's (OnPrintShop's application is writing): every record
    waits, so the database is taken for "down" for a moment rather than tried record by record."""
    locked = sa.exc.OperationalError("BEGIN IMMEDIATE", {}, Exception("database is locked"))
    assert gw_sqlite.rt.ops.failure_kind(locked) == "unavailable"


def test_an_unknown_operational_error_counts_as_unavailable_only_when_the_database_does_not_answer(gw_sqlite, tmp_path):
    from gateway.ops.database import OpsDatabase

    odd = sa.exc.OperationalError("SELECT …", {}, Exception("something odd"))
    assert gw_sqlite.rt.ops.failure_kind(odd) == "refused"  # the database answers a ping
    binding = sa.exc.InterfaceError("UPDATE …", {}, Exception("Error binding parameter 1"))
    assert gw_sqlite.rt.ops.failure_kind(binding) == "refused"
    gone = OpsDatabase(f"sqlite:///{tmp_path}/no-such-folder/ops.db")
    assert gone.failure_kind(odd) == "unavailable"
    assert gone.failure_kind(sa.exc.InterfaceError("SELECT …", {}, Exception(0, ""))) == "unavailable"
    assert gone.failure_kind(sa.exc.IntegrityError("UPDATE …", {}, Exception(1062, "Duplicate entry"))) == "refused"


def test_a_lock_wait_in_onprintshop_is_retried_without_taking_the_database_for_down(gw_sqlite, monkeypatch):
    gw = gw_sqlite

    def lock_wait(*_args, **_kwargs):
        raise _mysql_error(1205, "Lock wait timeout exceeded; try restarting transaction")

    real = writes.apply_update
    monkeypatch.setattr(writes, "apply_update", lock_wait)
    r = gw.post("deals", {"id": "9406", "ops_id": "1", "stage": "Shipped", "modified_time": zt()})
    assert r.status_code == 202 and r.get_json() == {"status": "accepted"}
    assert not gw.rt.ops.recently_unavailable()
    table = tables.inbox_table
    with gw.rt.store.begin() as conn:
        assert conn.execute(sa.select(table.c.next_attempt_at)).scalar() > time.time()  # tried again a bit later
        conn.execute(table.update().values(next_attempt_at=0))
    result = reapply.reapply_pending(gw.rt)
    assert result == {"applied": 0, "left": 1, "unavailable": False}
    with gw.rt.store.begin() as conn:
        row = conn.execute(sa.select(table.c.attempts, table.c.next_attempt_at)).one()
        assert row.attempts == 0 and row.next_attempt_at > time.time()  # not counted, not retried in a hot loop
        conn.execute(table.update().values(next_attempt_at=0))
    monkeypatch.setattr(writes, "apply_update", real)
    assert reapply.reapply_pending(gw.rt)["applied"] == 1
    assert gw.order(1)["orders_status_id"] == 4


def test_an_order_row_locked_in_onprintshop_holds_back_only_that_record(make_app, ops_db_url, monkeypatch):
    """OnPrintShop's own application keeps order 1 locked: its delivery is stored (202) and tried
    again later; the database is not taken for "down", so order 2's delivery is applied at once."""
    from gateway.ops.database import backend as database

    if not ops_db_url.startswith("mysql"):
        pytest.skip("row locks: SQLite locks the whole database (test_a_locked_sqlite_onprintshop_database_…)")
    monkeypatch.setattr(database, "LOCK_WAIT_SECONDS", 1)
    gw = Gateway(make_app(OPS_DATABASE_URL=ops_db_url))
    other = sa.create_engine(ops_db_url)
    conn = other.connect()
    try:
        conn.execute(sa.text("SELECT * FROM orders WHERE orders_id = 1 FOR UPDATE"))
        r = gw.post("deals", {"id": "9407", "ops_id": "1", "stage": "Shipped", "modified_time": zt()})
        assert r.status_code == 202 and r.get_json() == {"status": "accepted"}
        assert not gw.rt.ops.recently_unavailable()
        r = gw.post("deals", {"id": "9408", "ops_id": "2", "stage": "Shipped", "modified_time": zt()})
        assert r.get_json() == {"status": "applied"}
    finally:
        conn.rollback()
        conn.close()
        other.dispose()
    _reapply_until_settled(gw.rt)
    assert gw.order(1)["orders_status_id"] == 4 and gw.order(2)["orders_status_id"] == 4
    with gw.rt.store.engine.connect() as sconn:
        assert sconn.execute(sa.select(tables.inbox_table.c.attempts).where(tables.inbox_table.c.zoho_id == "9407")).scalar() == 0


# -- a customer UPDATE OnPrintShop refuses is not an e-mail conflict ----------------------------------
def _refuse_empty_phone(gw, how: str) -> None:
    """OnPrintShop's database refuses a customer without a telephone, as an IntegrityError: a
    trigger (SQLite's RAISE(ABORT); on MariaDB a SIGNAL with MySQL's "cannot be null" error 1048),
    or on MariaDB a real NOT NULL column (strict mode: error 1048 too)."""
    with gw.rt.ops.engine.begin() as conn:
        if how == "not_null":
            conn.exec_driver_sql("UPDATE customers SET customers_telephone = '' WHERE customers_telephone IS NULL")
            conn.exec_driver_sql("ALTER TABLE customers MODIFY customers_telephone VARCHAR(32) NOT NULL")
        elif gw.rt.ops.dialect == "mysql":
            conn.exec_driver_sql("DROP TRIGGER IF EXISTS gw_test_phone")
            conn.exec_driver_sql(
                "CREATE TRIGGER gw_test_phone BEFORE UPDATE ON customers FOR EACH ROW "
                "BEGIN IF NEW.customers_telephone IS NULL OR NEW.customers_telephone = '' THEN "
                "SIGNAL SQLSTATE '23000' SET MYSQL_ERRNO = 1048, MESSAGE_TEXT = 'a customer needs a telephone'; "
                "END IF; END")
        else:
            conn.exec_driver_sql(
                "CREATE TRIGGER gw_test_phone BEFORE UPDATE ON customers "
                "WHEN NEW.customers_telephone IS NULL OR NEW.customers_telephone = '' "
                "BEGIN SELECT RAISE(ABORT, 'a customer needs a telephone'); END")


def _stored(gw, zoho_id: str) -> list[tuple]:
    t = tables.inbox_table.c
    with gw.rt.store.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(
            sa.select(t.state, t.outcome, t.reason).where(t.zoho_id == zoho_id).order_by(t.id)).all()]


@pytest.mark.parametrize("how", ["trigger", "not_null"])
def test_a_customer_update_onprintshop_refuses_is_retried_not_answered_as_an_email_conflict(
        make_app, ops_db_url, monkeypatch, how):
    if how == "not_null" and not ops_db_url.startswith("mysql"):
        pytest.skip("SQLite cannot make an existing column NOT NULL; the trigger case covers it")
    monkeypatch.setattr(inbox, "MAX_ATTEMPTS", 3)
    gw = Gateway(make_app(OPS_DATABASE_URL=ops_db_url))
    _refuse_empty_phone(gw, how)
    before = gw.customer(2)
    # the e-mail is the customer's own (it links the Contact) and is not written
    r = gw.post("contacts", {"id": "5901", "ops_id": "2", "email": "grace@example.com", "phone": "", "modified_time": zt()})
    assert r.status_code == 202, r.get_json()
    assert r.get_json() == {"status": "accepted"}
    assert not gw.rt.ops.recently_unavailable()
    [(state, outcome, reason)] = _stored(gw, "5901")
    assert (state, outcome) == ("pending", None) and "refused the change" in reason
    _reapply_until_settled(gw.rt)
    [(state, outcome, reason)] = _stored(gw, "5901")
    assert (state, outcome) == ("done", "failed") and "gave up after 3 attempts" in reason
    assert "e-mail" not in reason and "telephone" in reason.lower()
    assert gw.customer(2)["customers_telephone"] == before["customers_telephone"]
    # the same customer's other changes still go through once OnPrintShop takes them
    r = gw.post("contacts", {"id": "5901", "ops_id": "2", "email": "grace@example.com", "last_name": "Murray Hopper",
                             "modified_time": zt(5)})
    assert r.get_json() == {"status": "applied"} and gw.customer(2)["customers_lastname"] == "Murray Hopper"


def test_a_duplicate_on_another_unique_key_is_not_an_email_conflict(make_app, ops_db_url, monkeypatch):
    """The store keeps telephones unique: a Zoho change that gives customer 2 customer 1's number
    (and a new, free e-mail) is refused by OnPrintShop, not blamed on the e-mail."""
    monkeypatch.setattr(inbox, "MAX_ATTEMPTS", 2)
    gw = Gateway(make_app(OPS_DATABASE_URL=ops_db_url, GATEWAY_WRITE_BACK_EMAIL=True))
    with gw.rt.ops.engine.begin() as conn:
        conn.exec_driver_sql("CREATE UNIQUE INDEX uq_test_phone ON customers (customers_telephone)")
    taken = gw.customer(1)["customers_telephone"]
    assert gw.post("contacts", {"id": "5902", "email": "grace@example.com", "modified_time": zt(-10)}).status_code == 200
    r = gw.post("contacts", {"id": "5902", "email": "grace.hopper@example.com", "phone": taken,
                             "modified_time": zt()})
    assert r.status_code == 202 and r.get_json() == {"status": "accepted"}
    _reapply_until_settled(gw.rt)
    state, outcome, reason = _stored(gw, "5902")[-1]
    assert (state, outcome) == ("done", "failed") and "email" not in reason
    assert gw.customer(2)["customers_email_address"] == "grace@example.com"


def test_an_email_taken_between_the_check_and_the_write_is_still_a_conflict(make_app, ops_db_url):
    """OnPrintShop gives another customer the e-mail after the gateway checked it (the check is
    made to find nothing here): the database's duplicate key on the e-mail is answered 409."""
    gw = Gateway(make_app(OPS_DATABASE_URL=ops_db_url, GATEWAY_WRITE_BACK_EMAIL=True))
    assert gw.post("contacts", {"id": "5903", "email": "grace@example.com", "modified_time": zt(-10)}).status_code == 200
    gw.rt.ops._statements["email taken"] = sa.select(sa.literal(1)).where(
        sa.bindparam("email") == sa.bindparam("ops_id"))  # never true: the race's check saw nothing
    before = gw.snapshot()
    r = gw.post("contacts", {"id": "5903", "email": "ada@example.com", "first_name": "Grace",
                             "modified_time": zt()})
    assert r.status_code == 409, r.get_json()
    body = r.get_json()
    assert body["status"] == "conflict" and body["parameter"] == "email" and "ada@example.com" in body["error"]
    assert "(id " not in body["error"]  # the database said so, not the check
    assert [(s, o) for s, o, _reason in _stored(gw, "5903")][-1] == ("done", "conflict")
    assert gw.snapshot() == before
