"""Pooled MariaDB connections (gateway.store.make_engine): no ping and no ROLLBACK round trip per
transaction, yet a returned connection never carries an open transaction or its locks into the
next use, and a connection the server dropped is replaced, not handed out."""
import time

import pytest
import sqlalchemy as sa

from gateway.state import engine as store
from gateway.inbound import inbox
from tests.conftest import wait_until


@pytest.fixture
def mysql_engines():
    import os

    url = os.environ.get("TEST_MYSQL_URL")
    if not url:
        pytest.skip("TEST_MYSQL_URL is not set")
    engine, other = store.make_engine(url), sa.create_engine(url)
    with other.begin() as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS gw_test_pool")
        conn.exec_driver_sql("CREATE TABLE gw_test_pool (id INT PRIMARY KEY, v INT) ENGINE=InnoDB")
        conn.exec_driver_sql("INSERT INTO gw_test_pool VALUES (1, 0)")
    yield engine, other
    engine.dispose()
    with other.begin() as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS gw_test_pool")
    other.dispose()


def _row_is_free(other) -> bool:
    with other.connect() as conn:
        conn.exec_driver_sql("SET SESSION innodb_lock_wait_timeout = 1")
        try:
            conn.exec_driver_sql("SELECT v FROM gw_test_pool WHERE id = 1 FOR UPDATE").all()
        except sa.exc.OperationalError:
            return False
        finally:
            conn.rollback()
    return True


def test_a_connection_returned_inside_a_transaction_releases_its_locks(mysql_engines):
    engine, other = mysql_engines
    raw = engine.raw_connection()  # the driver used directly: SQLAlchemy never saw a transaction
    cursor = raw.cursor()
    cursor.execute("SELECT v FROM gw_test_pool WHERE id = 1 FOR UPDATE")
    cursor.fetchall()
    assert not _row_is_free(other)
    raw.close()
    assert _row_is_free(other)

    conn = engine.connect()
    conn.exec_driver_sql("UPDATE gw_test_pool SET v = 1 WHERE id = 1")
    conn.commit()
    conn.exec_driver_sql("UPDATE gw_test_pool SET v = 2 WHERE id = 1")  # a second, unfinished transaction
    conn.close()
    assert _row_is_free(other)
    with other.connect() as check:
        assert check.exec_driver_sql("SELECT v FROM gw_test_pool WHERE id = 1").scalar() == 1  # only the commit counts


def test_a_connection_the_server_dropped_is_replaced_at_checkout(mysql_engines, monkeypatch):
    engine, other = mysql_engines
    monkeypatch.setattr(store, "PING_AFTER_IDLE", 0.05)
    with engine.connect() as conn:
        first = conn.exec_driver_sql("SELECT CONNECTION_ID()").scalar()
    resting_since = time.monotonic()  # back in the pool
    with other.begin() as conn:
        conn.exec_driver_sql(f"KILL {int(first)}")

    def dropped_and_rested() -> bool:
        with other.connect() as conn:
            listed = conn.exec_driver_sql(f"SELECT COUNT(*) FROM information_schema.processlist WHERE id = {int(first)}").scalar()
        return not listed and time.monotonic() - resting_since >= store.PING_AFTER_IDLE

    wait_until(dropped_and_rested, timeout=10, message="the server to drop the killed connection (and it to rest long enough to be pinged)")
    with engine.connect() as conn:  # no error: the dead one was pinged and thrown away
        assert conn.exec_driver_sql("SELECT CONNECTION_ID()").scalar() != first


def test_inbox_decisions_run_at_read_committed_on_mariadb(make_app, state_db_url):
    rt = make_app(DATABASE_URL=state_db_url).extensions["gateway"]
    if rt.store.dialect != "mysql":
        pytest.skip("MariaDB only: SQLite takes the write lock, PostgreSQL is READ COMMITTED by default")
    with inbox.decision_txn(rt.store) as conn:
        assert conn.exec_driver_sql("SELECT @@session.tx_isolation").scalar() == "READ-COMMITTED"
    with rt.store.engine.connect() as conn:  # the store's own engine keeps the server default
        assert conn.exec_driver_sql("SELECT @@session.tx_isolation").scalar() == "REPEATABLE-READ"
