"""The durable inbox: every valid update from Zoho is decided, applied and recorded in a
state-store transaction, answered only once committed; deliveries arriving together share one
(group commit). The protocol, and why it is safe: docs/inbound.md, "The inbox"."""
from __future__ import annotations

import json
import logging
import time

import sqlalchemy as sa

from ..ops import OpsBusy, OpsUnavailable
from ..state import dialect
from ..state.engine import is_lock_conflict, rerun
from ..state.tables import applied_table, inbox_table, links_table
from ..sync import links, loopguard
from . import batch
from .committer import GroupCommitter
from .decision import (  # noqa: F401 (re-exported: the inbox's vocabulary)
    BUSY,
    BUSY_RETRY_SECONDS,
    HTTP_STATUS,
    LATER,
    RETRY_MAX_BACKOFF,
    RETRY_MIN_BACKOFF,
    STALE,
    TERMINAL,
    WAITING,
    Outcome,
    attempt_reason,
    decision_txn,
    done_values,
    retry_delay,
    seen_before,
)
from .parse import Update

log = logging.getLogger("gateway.inbound")

MAX_ATTEMPTS = 20           # refusals and bugs; "the store is away" and lock waits are retried uncounted

# Built once, run with bind parameters (building a Core statement costs more than running it).
_FINISH_INBOX = inbox_table.update().where(inbox_table.c.id == sa.bindparam("where_id"))
_INBOX_ROW = sa.select(inbox_table).where(inbox_table.c.id == sa.bindparam("id"))
_INSERT_MARKER = applied_table.insert()
_UPDATE_MARKER = applied_table.update().where(applied_table.c.module == sa.bindparam("where_module"),
                                              applied_table.c.zoho_id == sa.bindparam("where_zoho_id"))


def _earlier_pending(module, zoho_id):
    """An earlier pending row of the record: `module`/`zoho_id` are bind parameters, or the locked
    marker row's columns (correlated)."""
    return sa.select(inbox_table.c.id).where(
        inbox_table.c.module == module, inbox_table.c.zoho_id == zoho_id,
        inbox_table.c.state == "pending", inbox_table.c.id != sa.bindparam("id"),
        sa.or_(inbox_table.c.modified_time < sa.bindparam("modified_time"),
               sa.and_(inbox_table.c.modified_time == sa.bindparam("modified_time"),
                       inbox_table.c.id < sa.bindparam("id"))),
    ).limit(1)


def _link_of(module, zoho_id):
    return sa.select(links_table.c.ops_id).where(links_table.c.module == module, links_table.c.zoho_id == zoho_id)


_MARKER_COLUMNS = (applied_table.c.modified_time, applied_table.c.fingerprint, applied_table.c.ops_id)
_BY_KEY = (applied_table.c.module == sa.bindparam("module"), applied_table.c.zoho_id == sa.bindparam("zoho_id"))

# Marker row locked and read with the decision's inputs in one round trip (not on PostgreSQL: docs/inbound.md).
_LOCK_AND_READ = sa.select(
    *_MARKER_COLUMNS,
    _earlier_pending(applied_table.c.module, applied_table.c.zoho_id).scalar_subquery().label("earlier"),
    _link_of(applied_table.c.module, applied_table.c.zoho_id).scalar_subquery().label("linked"),
).where(*_BY_KEY)
_LOCK_AND_READ_LOCKED = _LOCK_AND_READ.with_for_update()
_MARKER_LOCKED = sa.select(*_MARKER_COLUMNS).where(*_BY_KEY).with_for_update()
_EARLIER_AND_LINK = sa.select(
    _earlier_pending(sa.bindparam("module"), sa.bindparam("zoho_id")).scalar_subquery().label("earlier"),
    _link_of(sa.bindparam("module"), sa.bindparam("zoho_id")).scalar_subquery().label("linked"),
)


class _Links:
    """The gateway's links, read in the decision's transaction (what the port asks of them)."""

    def __init__(self, conn):
        self.conn = conn

    def zoho_id_for(self, module: str, ops_id: int) -> str | None:
        return links.zoho_id_for(self.conn, module, ops_id)


# -- a new delivery: through this process's group committer -------------------------------------------
def receive(rt, module: str, update: Update, source: str = "webhook") -> Outcome:
    """Store the update durably and try to apply it now, in the next batch; answered only after
    its batch committed. A state-store failure reaches the caller (503): nothing was promised."""
    if update.module != module:
        raise ValueError(f"update is for {update.module}, not {module}")
    return committer(rt).submit(batch.Delivery(module, update, source))


def committer(rt) -> GroupCommitter:
    """The process's group committer for this runtime."""
    return rt.part("inbox.committer", lambda: GroupCommitter(lambda deliveries: _run_batch(rt, deliveries)))


def _run_batch(rt, deliveries: list) -> list:
    """Per delivery its Outcome, or the error it gets. A failure that one delivery may have caused
    runs each of them again alone; a state store away fails them all (503)."""
    try:
        rerun(lambda: _receive_once(rt, deliveries), attempts=5, when=_state_conflict)
        return [d.outcome for d in deliveries]
    except Exception as exc:
        if _store_away(exc):
            return [exc] * len(deliveries)
    results: list = []
    for delivery in deliveries:
        try:
            rerun(lambda d=delivery: _receive_once(rt, [d], True), attempts=5, when=_state_conflict)
            results.append(delivery.outcome)
        except Exception as exc:
            results.append(exc)
    return results


def _receive_once(rt, deliveries: list, careful: bool = False) -> None:
    batch.run(rt, deliveries, careful)


def _state_conflict(exc: BaseException) -> bool:
    return isinstance(exc, sa.exc.DBAPIError) and is_lock_conflict(exc)


def _store_away(exc: BaseException) -> bool:
    """The state store itself failed (gone, timed out, a lock conflict that kept coming back)."""
    return isinstance(exc, (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.DisconnectionError,
                            sa.exc.TimeoutError)) or (isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated)


# -- a stored row, for the re-applier: one row, one transaction ---------------------------------------------
def _which(row) -> str:
    return f"inbox row {row.id}"


def row_update(row) -> Update:
    return Update(module=row.module, zoho_id=row.zoho_id, modified_time=row.modified_time,
                  fields=json.loads(row.fields), ops_id=row.ops_id_hint, modified_time_given=bool(row.time_given))


def _lock_record(conn, store, row) -> tuple:
    """The record's marker row, locked for this transaction (created empty if absent), and, read
    once it is locked, an earlier pending row of the record and the gateway's link."""
    params = {"module": row.module, "zoho_id": row.zoho_id, "id": row.id, "modified_time": row.modified_time}
    if store.dialect == dialect.SQLITE:
        query = _LOCK_AND_READ
    elif store.dialect == dialect.MYSQL:
        query = _LOCK_AND_READ_LOCKED
    else:
        query = _MARKER_LOCKED
    marker = conn.execute(query, params).first()
    if marker is None:
        try:
            with conn.begin_nested():
                conn.execute(_INSERT_MARKER, {"module": row.module, "zoho_id": row.zoho_id, "updated_at": time.time()})
        except sa.exc.IntegrityError:
            pass  # another worker made it first; the select below waits for its lock
        marker = conn.execute(query, params).first()
    if query is not _MARKER_LOCKED:
        return marker, marker
    return marker, conn.execute(_EARLIER_AND_LINK, params).one()


def decide_and_apply(rt, sconn, writer, row) -> Outcome:
    """Duplicate, stale, waiting or apply, for one stored inbox row, in the caller's locked transaction."""
    marker, found = _lock_record(sconn, rt.store, row)
    if found.earlier is not None:
        return Outcome("accepted", WAITING, inbox_id=row.id)
    update = row_update(row)
    if marker.modified_time is not None:
        if update.modified_time < marker.modified_time:
            return _finish(sconn, row, "stale", STALE, marker.ops_id)
        if update.modified_time == marker.modified_time and (
            row.fingerprint == marker.fingerprint
            or seen_before(sconn, row.module, row.zoho_id, row.modified_time, row.fingerprint)
        ):
            return _finish(sconn, row, "duplicate", "already applied", marker.ops_id)

    try:
        result = writer.apply(update, found.linked, _Links(sconn))
    except (OpsBusy, OpsUnavailable) as exc:
        log.warning("%s; %s stays pending", exc, _which(row))
        raise
    if result.written:
        loopguard.record(sconn, *result.written)  # committed with the outcome, right after OnPrintShop's
    if result.status in ("applied", "stale") and result.found_by in ("ops_id", "email"):
        links.save(sconn, update.module, result.ops_id, update.zoho_id)
    if result.status == "applied":
        sconn.execute(_UPDATE_MARKER, {
            "where_module": row.module, "where_zoho_id": row.zoho_id, "modified_time": update.modified_time,
            "fingerprint": row.fingerprint, "ops_id": result.ops_id, "updated_at": time.time(),
        })
    message = result.message + "".join(f"; {note}" for note in result.notes)
    return _finish(sconn, row, result.status, message, result.ops_id, result.parameter)


def _finish(sconn, row, status: str, reason: str, ops_id=None, parameter=None) -> Outcome:
    sconn.execute(_FINISH_INBOX, {"where_id": row.id, **done_values(status, reason, ops_id, parameter)})
    return Outcome(status, reason, inbox_id=row.id, ops_id=ops_id, parameter=parameter)


def count_attempt(conn, inbox_id: int, reason: str) -> None:
    """Count a failed attempt and schedule the next; after MAX_ATTEMPTS, give up visibly ('failed')."""
    row = conn.execute(sa.select(inbox_table.c.attempts, inbox_table.c.state).where(inbox_table.c.id == inbox_id)).first()
    if row is None or row.state != "pending":
        return
    attempts = row.attempts + 1
    values = {"attempts": attempts, "reason": reason[:500], "next_attempt_at": time.time() + retry_delay(attempts)}
    if attempts >= MAX_ATTEMPTS:
        values.update(state="done", outcome="failed", finished_at=time.time(),
                      reason=f"gave up after {attempts} attempts: {reason}"[:500])
        log.error("inbox row %s failed %s times; given up: %s", inbox_id, attempts, reason)
    conn.execute(inbox_table.update().where(inbox_table.c.id == inbox_id).values(**values))


def load_row(sconn, inbox_id: int):
    return sconn.execute(_INBOX_ROW, {"id": inbox_id}).first()
