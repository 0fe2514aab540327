"""On a SQLite state store, deciding takes the store's one write lock (BEGIN IMMEDIATE): an
OnPrintShop database that is slow to connect must not hold it, or every other writer (the
outbound queue, leases, the admin pages) waits behind the OnPrintShop connection timeout."""
from __future__ import annotations

import sqlite3
import threading
import time

import sqlalchemy as sa

from gateway.inbound import inbox, parse, reapply, reports
from tests.conftest import mysql_error
from tests.inbound.conftest import Gateway


def _stalled_connects(rt):
    """Make every new OnPrintShop connection hang until released, then fail (a host that drops packets)."""
    connecting, release = threading.Event(), threading.Event()

    def stall(_dialect, _record, _cargs, _cparams):
        connecting.set()
        release.wait(10)
        if rt.ops.dialect == "mysql":
            raise mysql_error(rt.ops.engine, 2003, "Can't connect to MySQL server on '127.0.0.1' (timed out)")
        raise sqlite3.OperationalError("unable to open database file")

    rt.ops.engine.dispose()  # no pooled connection to reuse
    sa.event.listen(rt.ops.engine, "do_connect", stall)
    return connecting, release, lambda: sa.event.remove(rt.ops.engine, "do_connect", stall)


def _state_writer_is_not_held(rt, connecting, release, work) -> None:
    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    try:
        assert connecting.wait(5)
        leased = threading.Event()
        writer = threading.Thread(target=lambda: rt.store.try_lease("other.task", "holder", 30) and leased.set(),
                                  daemon=True)
        writer.start()
        assert leased.wait(3), "a state-store writer waited behind the OnPrintShop connection attempt"
    finally:
        release.set()
        worker.join(15)


def test_a_stalled_onprintshop_connection_does_not_hold_the_state_store_lock(make_app, ops_db_url):
    gw = Gateway(make_app(OPS_DATABASE_URL=ops_db_url))  # the state store is SQLite
    rt = gw.rt
    assert rt.store.dialect == "sqlite"
    update = parse.validate("Deals", {"id": "9501", "ops_id": "1", "stage": "Shipped",
                                      "modified_time": str((int(time.time()) - 600) * 1000)}, rt.ops.mapping, "UTC")
    rt.ops.statuses()  # the status names are cached, as after any earlier delivery
    connecting, release, undo = _stalled_connects(rt)
    answers = []
    try:
        _state_writer_is_not_held(rt, connecting, release, lambda: answers.append(inbox.receive(rt, "Deals", update)))
    finally:
        undo()
    assert [a.status for a in answers] == ["accepted"]  # stored, applied once OnPrintShop answers again
    assert reports.pending_count(rt) == 1
    rt.ops._unavailable_until = 0.0
    assert reapply.reapply_pending(rt)["applied"] == 1
    assert gw.order(1)["orders_status_id"] == 4


def test_the_reapplier_does_not_hold_the_state_store_lock_while_connecting(gw_sqlite):
    rt = gw_sqlite.rt
    update = parse.validate("Deals", {"id": "9502", "ops_id": "2", "stage": "Shipped",
                                      "modified_time": str((int(time.time()) - 600) * 1000)}, rt.ops.mapping, "UTC")
    rt.ops.mark_unavailable(600)
    assert inbox.receive(rt, "Deals", update).status == "accepted"
    rt.ops._unavailable_until = 0.0
    connecting, release, undo = _stalled_connects(rt)
    results = []
    try:
        _state_writer_is_not_held(rt, connecting, release, lambda: results.append(reapply.reapply_pending(rt)))
    finally:
        undo()
    assert results == [{"applied": 0, "left": 1, "unavailable": True}]
    rt.ops._unavailable_until = 0.0
    assert reapply.reapply_pending(rt)["applied"] == 1
    assert gw_sqlite.order(2)["orders_status_id"] == 4
