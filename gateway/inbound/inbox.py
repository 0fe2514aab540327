"""The durable inbox: every valid update from Zoho is decided, applied and recorded in one
state-store transaction, answered only once committed; what OnPrintShop cannot take now is stored
pending for `reapply`. The protocol, and why it is safe: docs/inbound.md, "The inbox"."""
from __future__ import annotations

import contextlib
import json
import logging
import time
from dataclasses import dataclass
from types import SimpleNamespace

import sqlalchemy as sa

from ..ops import OpsBusy, OpsRefused, OpsUnavailable
from ..state import dialect
from ..state.engine import is_lock_conflict, rerun
from ..state.tables import applied_table, inbox_table, links_table
from ..sync import links, loopguard
from .parse import Update

log = logging.getLogger("gateway.inbound")

HTTP_STATUS = {
    "applied": 200, "duplicate": 200, "stale": 200, "accepted": 202,
    "not_found": 404, "conflict": 409, "invalid": 422, "failed": 422,
}
TERMINAL = ("applied", "duplicate", "stale", "not_found", "conflict", "invalid", "failed")

MAX_ATTEMPTS = 20           # refusals and bugs; "the store is away" and lock waits are retried uncounted
RETRY_MIN_BACKOFF = 1.0
RETRY_MAX_BACKOFF = 30.0
BUSY_RETRY_SECONDS = 2.0    # a record locked in OnPrintShop is tried again after this (not counted)
LATER = "stored; the OnPrintShop database is unreachable, it will be applied later"

# Built once, run with bind parameters (building a Core statement costs more than running it).
_INSERT_INBOX = inbox_table.insert()
_FINISH_INBOX = inbox_table.update().where(inbox_table.c.id == sa.bindparam("where_id"))
_INBOX_ROW = sa.select(inbox_table).where(inbox_table.c.id == sa.bindparam("id"))
_INSERT_MARKER = applied_table.insert()
_UPDATE_MARKER = applied_table.update().where(applied_table.c.module == sa.bindparam("where_module"),
                                              applied_table.c.zoho_id == sa.bindparam("where_zoho_id"))
_NOT_STORED = 2 ** 62  # stands in for the id of a delivery not inserted yet (after every stored row)


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

# A finished delivery of the record with this time and these values, applied (or a duplicate)
# before: a retry by Zoho after a later change at the same minute must not roll that change back.
_SEEN_BEFORE = sa.select(inbox_table.c.id).where(
    inbox_table.c.module == sa.bindparam("module"), inbox_table.c.zoho_id == sa.bindparam("zoho_id"),
    inbox_table.c.state == "done", inbox_table.c.modified_time == sa.bindparam("modified_time"),
    inbox_table.c.fingerprint == sa.bindparam("fingerprint"), inbox_table.c.outcome.in_(("applied", "duplicate")),
).limit(1)


@dataclass
class Outcome:
    """What became of one delivery: its status (applied, duplicate, stale, accepted, not_found,
    conflict, invalid, failed), a message, and the answer it gets."""

    status: str
    message: str = ""
    inbox_id: int | None = None
    ops_id: int | None = None
    parameter: str | None = None

    @property
    def ok(self) -> bool:
        return self.http_status < 400

    @property
    def http_status(self) -> int:
        return HTTP_STATUS.get(self.status, 200)

    def body(self) -> dict:
        """The JSON answer; errors (4xx) carry an `error` field."""
        body: dict = {"status": self.status}
        if self.http_status >= 400:
            body["error"] = self.message
            if self.parameter:
                body["parameter"] = self.parameter
        return body


class _Links:
    """The gateway's links, read in the decision's transaction (what the port asks of them)."""

    def __init__(self, conn):
        self.conn = conn

    def zoho_id_for(self, module: str, ops_id: int) -> str | None:
        return links.zoho_id_for(self.conn, module, ops_id)


@contextlib.contextmanager
def decision_txn(store):
    """The state-store transaction that decides and records: BEGIN IMMEDIATE on SQLite (one
    writer), else row locks (`FOR UPDATE` on the record's marker) at READ COMMITTED."""
    if store.dialect != dialect.MYSQL:
        with store.immediate() as conn:
            yield conn
        return
    with store.write_engine.connect() as conn:
        try:
            yield conn
        except BaseException:
            conn.rollback()
            raise
        conn.commit()


def receive(rt, module: str, update: Update, source: str = "webhook") -> Outcome:
    """Store the update durably and try to apply it now; answered only after the commit.
    A state-store failure reaches the caller (503): nothing was promised."""
    if update.module != module:
        raise ValueError(f"update is for {update.module}, not {module}")
    return rerun(lambda: _receive_once(rt, module, update, source), attempts=5, when=_state_conflict)


def _state_conflict(exc: BaseException) -> bool:
    return isinstance(exc, sa.exc.DBAPIError) and is_lock_conflict(exc)


def _receive_once(rt, module: str, update: Update, source: str) -> Outcome:
    now = time.time()
    # SQLite's write lock is the whole state store's: OnPrintShop is connected to before it is taken.
    with rt.ops.writer(connect_now=rt.store.dialect == dialect.SQLITE,
                      write_email=rt.config["GATEWAY_WRITE_BACK_EMAIL"]) as writer, decision_txn(rt.store) as sconn:
        values = dict(
            received_at=now, source=source, module=module, zoho_id=update.zoho_id, ops_id_hint=update.ops_id,
            modified_time=update.modified_time, time_given=update.modified_time_given,
            fields=json.dumps(update.fields, ensure_ascii=False), fingerprint=update.fingerprint(),
            state="pending", attempts=0, next_attempt_at=now,
        )
        # Inserted once its outcome is known (one INSERT), still inside this transaction.
        row = SimpleNamespace(id=None, outcome=None, reason=None, ops_id=None, values=values, **values)
        if writer.down:
            return Outcome("accepted", LATER, inbox_id=_insert_pending(sconn, row))
        try:
            return decide_and_apply(rt, sconn, writer, row, update=update)
        except OpsUnavailable:
            return Outcome("accepted", LATER, inbox_id=_insert_pending(sconn, row))
        except OpsBusy:
            row.values["next_attempt_at"] = time.time() + BUSY_RETRY_SECONDS
            return Outcome("accepted", "stored; the OnPrintShop record is locked, it will be applied shortly",
                           inbox_id=_insert_pending(sconn, row))
        except sa.exc.DBAPIError:
            raise  # the state store's own: the transaction may be gone, so nothing may be promised
        except Exception as exc:
            # A failure in applying (ours or OnPrintShop's): stored pending, retried, counted.
            inbox_id = _insert_pending(sconn, row)
            log.warning("inbox row %s could not be applied now; it stays pending: %s", inbox_id, attempt_reason(exc),
                        exc_info=not isinstance(exc, OpsRefused))
            count_attempt(sconn, inbox_id, f"{attempt_reason(exc)}; retried later")
            return Outcome("accepted", "stored; it will be applied later", inbox_id=inbox_id)


def attempt_reason(exc: Exception) -> str:
    """What the admin page shows for a failed attempt: OnPrintShop's own refusal, else the error's type."""
    return str(exc) if isinstance(exc, OpsRefused) else f"{exc.__class__.__name__} while applying"


def _which(row) -> str:
    return f"inbox row {row.id}" if row.id is not None else f"the new delivery for {row.module} {row.zoho_id}"


def _insert_pending(sconn, row) -> int:
    """Insert a delivery not stored yet as 'pending'; returns its id (a stored row's id as is)."""
    if row.id is None:
        row.id = sconn.execute(_INSERT_INBOX, row.values).inserted_primary_key[0]
    return row.id


def row_update(row) -> Update:
    return Update(module=row.module, zoho_id=row.zoho_id, modified_time=row.modified_time,
                  fields=json.loads(row.fields), ops_id=row.ops_id_hint, modified_time_given=bool(row.time_given))


def _lock_record(conn, store, row) -> tuple:
    """The record's marker row, locked for this transaction (created empty if absent), and, read
    once it is locked, an earlier pending row of the record and the gateway's link."""
    params = {"module": row.module, "zoho_id": row.zoho_id,
              "id": _NOT_STORED if row.id is None else row.id, "modified_time": row.modified_time}
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


def decide_and_apply(rt, sconn, writer, row, update: Update | None = None) -> Outcome:
    """Duplicate, stale, waiting or apply, for one delivery, in the caller's locked transaction.
    `row` is a stored inbox row or a new delivery; `update` its values when the caller has them."""
    marker, found = _lock_record(sconn, rt.store, row)
    if found.earlier is not None:
        return Outcome("accepted", "stored; an earlier update of this record is applied first",
                       inbox_id=_insert_pending(sconn, row))
    if update is None:
        update = row_update(row)
    if marker.modified_time is not None:
        if update.modified_time < marker.modified_time:
            return _finish(sconn, row, "stale", "older than the last update applied from Zoho for this record",
                           marker.ops_id)
        if update.modified_time == marker.modified_time and (
            row.fingerprint == marker.fingerprint
            or sconn.execute(_SEEN_BEFORE, {"module": row.module, "zoho_id": row.zoho_id, "modified_time": row.modified_time,
                                            "fingerprint": row.fingerprint}).first() is not None
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
    stored_reason = f"{parameter}: {reason}" if parameter and status in ("invalid", "conflict") else reason
    done = {"state": "done", "outcome": status, "reason": stored_reason[:500], "ops_id": ops_id, "finished_at": time.time()}
    if row.id is None:  # a new delivery decided at once: stored in its final state
        row.id = sconn.execute(_INSERT_INBOX, {**row.values, **done}).inserted_primary_key[0]
    else:
        sconn.execute(_FINISH_INBOX, {"where_id": row.id, **done})
    return Outcome(status, reason, inbox_id=row.id, ops_id=ops_id, parameter=parameter)


def count_attempt(conn, inbox_id: int, reason: str) -> None:
    """Count a failed attempt and schedule the next; after MAX_ATTEMPTS, give up visibly ('failed')."""
    row = conn.execute(sa.select(inbox_table.c.attempts, inbox_table.c.state).where(inbox_table.c.id == inbox_id)).first()
    if row is None or row.state != "pending":
        return
    attempts = row.attempts + 1
    values = {"attempts": attempts, "reason": reason[:500],
              "next_attempt_at": time.time() + min(RETRY_MAX_BACKOFF, RETRY_MIN_BACKOFF * 2 ** min(attempts, 10))}
    if attempts >= MAX_ATTEMPTS:
        values.update(state="done", outcome="failed", finished_at=time.time(),
                      reason=f"gave up after {attempts} attempts: {reason}"[:500])
        log.error("inbox row %s failed %s times; given up: %s", inbox_id, attempts, reason)
    conn.execute(inbox_table.update().where(inbox_table.c.id == inbox_id).values(**values))


def load_row(sconn, inbox_id: int):
    return sconn.execute(_INBOX_ROW, {"id": inbox_id}).first()
