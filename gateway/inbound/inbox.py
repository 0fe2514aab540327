"""The durable inbox: every authenticated, valid update from Zoho, kept before it is answered.

Tables (state store):
- `gw_inbox`: one row per delivery (webhook, Notification API or catch-up): the validated
  values, `state` 'pending' until it has been dealt with, then 'done' with its `outcome`.
- `gw_inbox_applied`: per Zoho record, the `modified_time` and fingerprint of the last update
  applied from Zoho (what "duplicate" and "stale" are judged against; at that same time, a
  delivery whose values were applied before, a retry by Zoho, is a duplicate too).

`receive(rt, module, update, source)` tries to apply the update at once
(`gateway.inbound.apply`, one OnPrintShop transaction, inside a state-store transaction) and
inserts its row, in its final state, in that same state-store transaction; it answers only
after that transaction has committed. When the OnPrintShop
database cannot be reached, or an earlier update of the same record is still waiting, the
row is committed 'pending' and the answer is 202
"accepted": `run_reapplier` (a background task) applies pending rows later, per record in
`modified_time` order, backing off while the database is away. A change OnPrintShop refuses
(a trigger's SIGNAL, a constraint) is stored pending too (202): its attempts are counted and it
ends 'failed' after MAX_ATTEMPTS, holding back only that record's later updates; the database
is not taken for "down" (`OpsDatabase.failure_kind` tells the errors apart). Rows survive restarts because
they are in the state store. A 2xx is never sent for a row that was not committed.

Deciding and applying is serialised per record: on SQLite by the state store's write lock,
elsewhere by a `FOR UPDATE` lock on the record's `gw_inbox_applied` row; the OnPrintShop
transaction runs inside that and commits first (on SQLite its connection is opened before the
lock is taken, so an OnPrintShop host slow to answer does not hold every state-store writer).
If the state store then fails to commit, the caller gets a 503 (the update is in OnPrintShop; a retry by Zoho is answered "applied" again
as a no-op, and records the loop-guard row the failed commit lost, as `receive`'s own rerun after a
state-store deadlock does), so a 2xx still always means "recorded".
"""
from __future__ import annotations

import contextlib
import json
import logging
import time
from dataclasses import dataclass
from types import SimpleNamespace

import sqlalchemy as sa

from .. import links
from ..ops.database import DATABASE_ERRORS
from ..store import is_lock_conflict, metadata, new_holder_id
from . import loopguard
from .apply import apply_update
from .parse import Update

log = logging.getLogger("gateway.inbound")

_ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")

inbox_table = sa.Table(
    "gw_inbox",
    metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("received_at", sa.Double, nullable=False),
    sa.Column("source", sa.String(16), nullable=False),
    sa.Column("module", sa.String(16), nullable=False),
    sa.Column("zoho_id", sa.String(64), nullable=False),
    sa.Column("ops_id_hint", sa.BigInteger, nullable=True),
    sa.Column("modified_time", sa.Double, nullable=False),
    sa.Column("time_given", sa.Boolean, nullable=False, default=True),
    sa.Column("fields", sa.Text, nullable=False),  # JSON of the validated values
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),  # 'pending' | 'done'
    sa.Column("outcome", sa.String(16), nullable=True),
    sa.Column("reason", sa.String(500), nullable=True),
    sa.Column("ops_id", sa.BigInteger, nullable=True),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("next_attempt_at", sa.Double, nullable=False, default=0.0),
    sa.Column("finished_at", sa.Double, nullable=True),
    sa.Index("ix_gw_inbox_pending", "state", "next_attempt_at"),
    sa.Index("ix_gw_inbox_record", "module", "zoho_id", "state"),
    sa.Index("ix_gw_inbox_received", "received_at"),
)

applied_table = sa.Table(
    "gw_inbox_applied",
    metadata,
    sa.Column("module", sa.String(16), primary_key=True),
    sa.Column("zoho_id", sa.String(64), primary_key=True),
    sa.Column("modified_time", sa.Double, nullable=True),  # NULL: only a lock row so far
    sa.Column("fingerprint", sa.String(64), nullable=True),
    sa.Column("ops_id", sa.BigInteger, nullable=True),
    sa.Column("updated_at", sa.Double, nullable=False),
)

# Built once, run with bind parameters (building a Core statement costs more than running it).
_INSERT_INBOX = inbox_table.insert()
_FINISH_INBOX = inbox_table.update().where(inbox_table.c.id == sa.bindparam("where_id"))
_INBOX_ROW = sa.select(inbox_table).where(inbox_table.c.id == sa.bindparam("id"))
_INSERT_MARKER = applied_table.insert()
_UPDATE_MARKER = applied_table.update().where(applied_table.c.module == sa.bindparam("where_module"),
                                              applied_table.c.zoho_id == sa.bindparam("where_zoho_id"))
_NOT_STORED = 2 ** 62  # stands in for the id of a delivery not inserted yet (after every stored row)


def _earlier_pending(module, zoho_id):
    """An earlier pending row of the record (one is enough): `module`/`zoho_id` are bind
    parameters, or the locked marker row's columns (correlated)."""
    return sa.select(inbox_table.c.id).where(
        inbox_table.c.module == module, inbox_table.c.zoho_id == zoho_id,
        inbox_table.c.state == "pending", inbox_table.c.id != sa.bindparam("id"),
        sa.or_(inbox_table.c.modified_time < sa.bindparam("modified_time"),
               sa.and_(inbox_table.c.modified_time == sa.bindparam("modified_time"),
                       inbox_table.c.id < sa.bindparam("id"))),
    ).limit(1)


def _link_of(module, zoho_id):
    """The gateway's link for the record (apply's first lookup)."""
    return sa.select(links.links_table.c.ops_id).where(links.links_table.c.module == module,
                                                       links.links_table.c.zoho_id == zoho_id)


_MARKER_COLUMNS = (applied_table.c.modified_time, applied_table.c.fingerprint, applied_table.c.ops_id)
_BY_KEY = (applied_table.c.module == sa.bindparam("module"), applied_table.c.zoho_id == sa.bindparam("zoho_id"))

# The record's marker row, locked, read together with what the decision needs once it is locked
# (an earlier pending row of the record, and the gateway's link for it): one round trip.
# MariaDB/MySQL: the subqueries are plain reads correlated with the locked row, so they are run
# after the lock is granted, each reading what is committed then (READ COMMITTED: a fresh
# snapshot per read), and they lock nothing. SQLite: BEGIN IMMEDIATE already holds the one write
# lock. PostgreSQL reads a whole statement in the snapshot taken at its start, before any wait
# for the lock, so there the two reads stay two statements (`_MARKER_LOCKED`, then `_EARLIER_AND_LINK`).
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

# A finished delivery of the record with this time and these values, applied (or found a
# duplicate) before: a retry by Zoho after a later change at the same (minute-precision) time
# must not roll that change back. Only run when the time equals the last applied one but the
# values differ; (module, zoho_id, state) lead ix_gw_inbox_record, so it reads one record's rows.
_SEEN_BEFORE = sa.select(inbox_table.c.id).where(
    inbox_table.c.module == sa.bindparam("module"), inbox_table.c.zoho_id == sa.bindparam("zoho_id"),
    inbox_table.c.state == "done", inbox_table.c.modified_time == sa.bindparam("modified_time"),
    inbox_table.c.fingerprint == sa.bindparam("fingerprint"), inbox_table.c.outcome.in_(("applied", "duplicate")),
).limit(1)

HTTP_STATUS = {
    "applied": 200, "duplicate": 200, "stale": 200, "accepted": 202,
    "not_found": 404, "conflict": 409, "invalid": 422, "failed": 422,
}
TERMINAL = ("applied", "duplicate", "stale", "not_found", "conflict", "invalid", "failed")

MAX_ATTEMPTS = 20           # refusals and bugs; "the database is away" and lock waits are retried uncounted
REAPPLY_POLL_SECONDS = 1.0
REAPPLY_MIN_BACKOFF = 1.0
REAPPLY_MAX_BACKOFF = 30.0
REAPPLY_LEASE = "inbox.reapplier"
UNAVAILABLE_PAUSE = 2.0     # after a failed connection, answer 202 at once for this long
BUSY_RETRY_SECONDS = 2.0    # a record locked in OnPrintShop is tried again after this (not counted)



@dataclass
class Outcome:
    status: str           # applied | duplicate | stale | accepted | not_found | conflict | invalid
    message: str = ""
    inbox_id: int | None = None
    ops_id: int | None = None
    parameter: str | None = None

    @property
    def http_status(self) -> int:
        return HTTP_STATUS.get(self.status, 200)

    def body(self) -> dict:
        """The JSON answer of §7; errors (4xx) carry an `error` field."""
        body: dict = {"status": self.status}
        if self.http_status >= 400:
            body["error"] = self.message
            if self.parameter:
                body["parameter"] = self.parameter
        return body


class OpsUnavailable(Exception):
    """The OnPrintShop database cannot be reached now."""


class OpsBusy(Exception):
    """The OnPrintShop record is locked (lock wait, deadlock): kept pending, retried soon, not counted."""


# -- receiving -----------------------------------------------------------------------------------
@contextlib.contextmanager
def _decision_txn(store):
    """The state-store transaction that decides and records.

    SQLite: BEGIN IMMEDIATE (one writer at a time). Elsewhere a plain transaction in which
    `FOR UPDATE` on the record's row serialises per record; on MariaDB/MySQL it runs at READ
    COMMITTED, so locking reads take no gap locks (under REPEATABLE READ, first deliveries of
    neighbouring new records deadlock on them). PostgreSQL's default is READ COMMITTED already.
    A deadlock that still happens is retried by `receive` as a whole.
    """
    if store.dialect != "mysql":
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


class OpsError(Exception):
    """The OnPrintShop database refused a statement for this record (a trigger, a constraint; not a
    connection problem): kept pending, a counted attempt, given up as 'failed' after MAX_ATTEMPTS."""


def receive(rt, module: str, update: Update, source: str = "webhook") -> Outcome:
    """Store the update durably, and try to apply it now; the answer is given only after the commit.

    One state-store transaction holds both: the apply runs (the OnPrintShop transaction commits
    inside it) and the inbox row is inserted with its outcome. If OnPrintShop
    cannot take it, the row is committed pending (202). If the state store fails, the exception
    reaches the caller (503): nothing was promised.
    """
    if update.module != module:
        raise ValueError(f"update is for {update.module}, not {module}")
    for attempt in range(5):
        try:
            return _receive_once(rt, module, update, source)
        except sa.exc.DBAPIError as exc:
            if attempt == 4 or not is_lock_conflict(exc):
                raise
            time.sleep(0.005 * (attempt + 1))  # a deadlock in the state store: the whole transaction is retried
    raise AssertionError("unreachable")


def _receive_once(rt, module: str, update: Update, source: str) -> Outcome:
    now = time.time()
    later = "stored; the OnPrintShop database is unreachable, it will be applied later"
    with _ops_connection_first(rt) as oconn, _decision_txn(rt.store) as sconn:
        values = dict(
            received_at=now, source=source, module=module, zoho_id=update.zoho_id, ops_id_hint=update.ops_id,
            modified_time=update.modified_time, time_given=update.modified_time_given,
            fields=json.dumps(update.fields, ensure_ascii=False), fingerprint=update.fingerprint(),
            state="pending", attempts=0, next_attempt_at=now,
        )
        # The row is inserted once its outcome is known (one INSERT instead of INSERT + UPDATE),
        # still inside this transaction: pending (202) or done, it is committed before the answer.
        row = SimpleNamespace(id=None, outcome=None, reason=None, ops_id=None, values=values, **values)
        if rt.ops.recently_unavailable():
            return Outcome("accepted", later, inbox_id=_insert_pending(sconn, row))
        try:
            # No savepoint needed: until OnPrintShop has committed, nothing but the record's empty
            # lock row is written here, and any state-store error is re-raised below (no 2xx).
            return _decide_and_apply(rt, sconn, None, row, oconn, update=update)
        except OpsUnavailable:
            return Outcome("accepted", later, inbox_id=_insert_pending(sconn, row))
        except OpsBusy:
            row.values["next_attempt_at"] = time.time() + BUSY_RETRY_SECONDS
            return Outcome("accepted", "stored; the OnPrintShop record is locked, it will be applied shortly",
                           inbox_id=_insert_pending(sconn, row))
        except sa.exc.DBAPIError:
            # Raised by the state store itself (OnPrintShop's errors arrive as OpsUnavailable or
            # OpsError): the transaction may be gone, so nothing may be promised.
            raise
        except Exception as exc:
            # A failure in applying (ours or OnPrintShop's): the row is stored pending and the
            # re-applier retries it (if the state store cannot take the row, that error is raised).
            inbox_id = _insert_pending(sconn, row)
            log.exception("inbox row %s could not be applied now; it stays pending", inbox_id)
            _count_attempt(sconn, inbox_id, f"{_attempt_reason(exc)}; retried later")
            return Outcome("accepted", "stored; it will be applied later", inbox_id=inbox_id)


def _attempt_reason(exc: Exception) -> str:
    """What the admin page shows for a failed attempt: OnPrintShop's own refusal, else the error's type."""
    return str(exc) if isinstance(exc, OpsError) else f"{exc.__class__.__name__} while applying"


def _which(row) -> str:
    return f"inbox row {row.id}" if row.id is not None else f"the new delivery for {row.module} {row.zoho_id}"


def _insert_pending(sconn, row) -> int:
    """Insert a delivery not stored yet as 'pending'; returns its id (a stored row's id as is)."""
    if row.id is None:
        row.id = sconn.execute(_INSERT_INBOX, row.values).inserted_primary_key[0]
    return row.id


def _row_update(row) -> Update:
    return Update(module=row.module, zoho_id=row.zoho_id, modified_time=row.modified_time,
                  fields=json.loads(row.fields), ops_id=row.ops_id_hint, modified_time_given=bool(row.time_given))


def _lock_record(conn, store, row) -> tuple:
    """The record's gw_inbox_applied row, locked for this transaction (created empty if absent),
    and, read once it is locked: an earlier pending row of the record and the gateway's link.
    Returns (marker, found): marker has modified_time, fingerprint, ops_id; found has earlier, linked."""
    params = {"module": row.module, "zoho_id": row.zoho_id,
              # A delivery not stored yet comes after every stored one (its id would be the highest).
              "id": _NOT_STORED if row.id is None else row.id, "modified_time": row.modified_time}
    if store.dialect == "sqlite":
        query = _LOCK_AND_READ
    elif store.dialect == "mysql":
        query = _LOCK_AND_READ_LOCKED
    else:  # PostgreSQL: see _LOCK_AND_READ
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


UNREACHABLE = object()  # `_ops_connection_first` could not connect: the database is away


@contextlib.contextmanager
def _ops_connection_first(rt):
    """On a SQLite state store: an OnPrintShop connection, opened before the state store's write
    lock is taken (None elsewhere, or when it is known to be away; UNREACHABLE when it fails now).

    Why: BEGIN IMMEDIATE is the one write lock of the whole state store; connecting to an
    OnPrintShop host that drops packets takes up to CONNECT_TIMEOUT, and every other writer
    (queue, leases, admin) would wait that long behind it. Queries on an open connection still
    run under the lock (deciding and applying stay one serialised step per record).
    """
    ops = rt.ops
    if rt.store.dialect != "sqlite" or ops.recently_unavailable():
        yield None
        return
    try:
        conn = ops.engine.connect()
    except DATABASE_ERRORS as exc:
        if ops.failure_kind(exc) != "unavailable":
            yield None  # not a connection problem: the apply connects itself and reports it
            return
        ops.mark_unavailable(UNAVAILABLE_PAUSE)
        log.warning("OnPrintShop database unavailable (%s); deliveries stay pending", exc.__class__.__name__)
        yield UNREACHABLE
        return
    try:
        yield conn
    finally:
        conn.close()


def _apply_row(rt, inbox_id: int) -> Outcome:
    """Decide and apply one pending inbox row in its own transaction. Raises OpsUnavailable."""
    with _ops_connection_first(rt) as oconn, _decision_txn(rt.store) as sconn:
        return _decide_and_apply(rt, sconn, inbox_id, oconn=oconn)


def _decide_and_apply(rt, sconn, inbox_id: int, row=None, oconn=None, update: Update | None = None) -> Outcome:
    """Duplicate, stale, waiting or apply: for one inbox row, in the caller's locked transaction.
    `update`: the row's values when the caller has them (a new delivery), else read from the row."""
    store = rt.store
    if row is None:
        row = sconn.execute(_INBOX_ROW, {"id": inbox_id}).first()
    if row is None:
        return Outcome("failed", "no such inbox row")
    if row.state == "done":
        return Outcome(row.outcome, row.reason or "", inbox_id=inbox_id, ops_id=row.ops_id)
    marker, found = _lock_record(sconn, store, row)
    if found.earlier is not None:
        return Outcome("accepted", "stored; an earlier update of this record is applied first",
                       inbox_id=_insert_pending(sconn, row))

    if update is None:
        update = _row_update(row)
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
        result = _apply_in_ops(rt, sconn, update, found.linked, oconn)
    except DATABASE_ERRORS as exc:
        kind = rt.ops.failure_kind(exc)
        if kind == "busy":
            # OnPrintShop (or its own application) held the row: the re-applier tries again soon.
            log.warning("OnPrintShop record locked (%s); %s stays pending", exc.__class__.__name__, _which(row))
            raise OpsBusy(exc.__class__.__name__) from None
        if kind == "unavailable":
            rt.ops.mark_unavailable(UNAVAILABLE_PAUSE)
            log.warning("OnPrintShop database unavailable (%s); %s stays pending",
                        exc.__class__.__name__, _which(row))
            raise OpsUnavailable(exc.__class__.__name__) from None
        # Refused for this record only: a counted attempt, and the database is not "down".
        raise OpsError(f"the OnPrintShop database refused the change: {str(getattr(exc, 'orig', exc))[:300]}") from exc

    if result.written:
        # Same state-store transaction as the outcome, committed right after OnPrintShop's.
        loopguard.record(sconn, *result.written)
    if result.status == "applied":
        if result.found_by in ("ops_id", "email"):
            links.save(sconn, update.module, result.ops_id, update.zoho_id)
        sconn.execute(_UPDATE_MARKER, {
            "where_module": row.module, "where_zoho_id": row.zoho_id, "modified_time": update.modified_time,
            "fingerprint": row.fingerprint, "ops_id": result.ops_id, "updated_at": time.time(),
        })
    elif result.status == "stale" and result.found_by in ("ops_id", "email"):
        links.save(sconn, update.module, result.ops_id, update.zoho_id)
    return _finish(sconn, row, result.status, result.message, result.ops_id, result.parameter)


def _apply_in_ops(rt, sconn, update: Update, linked, oconn=None):
    """One OnPrintShop transaction; a deadlock there (with OnPrintShop's own application, say)
    rolled it back entirely, so it is simply run again, a few times. `oconn`: the connection
    `_ops_connection_first` opened (None: one from the pool)."""
    if oconn is UNREACHABLE:
        raise OpsUnavailable("the OnPrintShop database did not answer the connection")
    for attempt in range(3):
        try:
            with rt.ops.begin(oconn) as tx_conn:
                return apply_update(rt.ops, tx_conn, sconn, update, linked)
        except sa.exc.OperationalError as exc:
            # A lock wait (1205) is not run again here: it already waited LOCK_WAIT_SECONDS, and
            # the row is still held; the record is postponed instead ("busy").
            if attempt == 2 or not is_lock_conflict(exc) or getattr(exc.orig, "args", (None,))[:1] == (1205,):
                raise
            time.sleep(0.005 * (attempt + 1))
    raise AssertionError("unreachable")


def _finish(sconn, row, status: str, reason: str, ops_id=None, parameter=None) -> Outcome:
    stored_reason = f"{parameter}: {reason}" if parameter and status in ("invalid", "conflict") else reason
    done = {"state": "done", "outcome": status, "reason": stored_reason[:500], "ops_id": ops_id, "finished_at": time.time()}
    if row.id is None:  # a new delivery decided at once: stored in its final state
        row.id = sconn.execute(_INSERT_INBOX, {**row.values, **done}).inserted_primary_key[0]
    else:
        sconn.execute(_FINISH_INBOX, {"where_id": row.id, **done})
    return Outcome(status, reason, inbox_id=row.id, ops_id=ops_id, parameter=parameter)


def _count_attempt(conn, inbox_id: int, reason: str) -> None:
    """Count a failed attempt and schedule the next; after MAX_ATTEMPTS errors, give up visibly.

    Only for errors other than "the database is away" (those are retried without counting)."""
    row = conn.execute(sa.select(inbox_table.c.attempts, inbox_table.c.state).where(inbox_table.c.id == inbox_id)).first()
    if row is None or row.state != "pending":
        return
    attempts = row.attempts + 1
    values = {"attempts": attempts, "reason": reason[:500],
              "next_attempt_at": time.time() + min(REAPPLY_MAX_BACKOFF, REAPPLY_MIN_BACKOFF * 2 ** min(attempts, 10))}
    if attempts >= MAX_ATTEMPTS:
        values.update(state="done", outcome="failed", finished_at=time.time(),
                      reason=f"gave up after {attempts} attempts: {reason}"[:500])
        log.error("inbox row %s failed %s times; given up: %s", inbox_id, attempts, reason)
    conn.execute(inbox_table.update().where(inbox_table.c.id == inbox_id).values(**values))


def _postpone(rt, inbox_id: int, seconds: float) -> None:
    """Try a pending row again after `seconds`, without counting an attempt."""
    rt.store.run(inbox_table.update().where(inbox_table.c.id == inbox_id, inbox_table.c.state == "pending")
                 .values(next_attempt_at=time.time() + seconds))


def _note_attempt(rt, inbox_id: int, reason: str) -> None:
    with _decision_txn(rt.store) as conn:
        _count_attempt(conn, inbox_id, reason)


# -- applying later ----------------------------------------------------------------------------------
def reapply_pending(rt, limit: int = 500) -> dict:
    """One pass over the due pending rows, per record in modified_time order.

    Returns {"applied": n, "left": n, "unavailable": bool}. Stops at the first sign that the
    OnPrintShop database is away (the rest waits for the next pass); a record OnPrintShop refuses
    or keeps locked holds back only its own later rows.
    """
    now = time.time()
    with rt.store.engine.connect() as conn:
        rows = conn.execute(
            sa.select(inbox_table.c.id, inbox_table.c.module, inbox_table.c.zoho_id, inbox_table.c.next_attempt_at)
            .where(inbox_table.c.state == "pending")
            .order_by(inbox_table.c.module, inbox_table.c.zoho_id, inbox_table.c.modified_time, inbox_table.c.id)
            .limit(limit)
        ).all()
    done = 0
    blocked: set = set()
    for row in rows:
        record = (row.module, row.zoho_id)
        if record in blocked:
            continue
        if row.next_attempt_at > now:
            blocked.add(record)  # an earlier row of this record waits: keep the order
            continue
        try:
            outcome = _apply_row(rt, row.id)
        except OpsUnavailable:
            return {"applied": done, "left": len(rows) - done, "unavailable": True}
        except OpsBusy:
            blocked.add(record)  # locked in OnPrintShop: tried again a bit later, others go on now
            _postpone(rt, row.id, BUSY_RETRY_SECONDS)
            continue
        except Exception as exc:
            log.exception("inbox row %s could not be applied", row.id)
            _note_attempt(rt, row.id, _attempt_reason(exc))
            blocked.add(record)
            continue
        if outcome.status == "accepted":
            blocked.add(record)
        else:
            done += 1
    return {"applied": done, "left": len(rows) - done, "unavailable": False}


def run_reapplier(rt, stop) -> None:
    """Background task: apply pending rows whenever there are some, backing off while OnPrintShop is away."""
    holder = new_holder_id()
    backoff = REAPPLY_MIN_BACKOFF
    while not stop.is_set():
        wait = REAPPLY_POLL_SECONDS
        try:
            if pending_count(rt) and rt.store.try_lease(REAPPLY_LEASE, holder, 120):
                try:
                    result = reapply_pending(rt)
                finally:
                    rt.store.release_lease(REAPPLY_LEASE, holder)
                if result["unavailable"]:
                    wait = backoff
                    backoff = min(REAPPLY_MAX_BACKOFF, backoff * 2)
                else:
                    backoff = REAPPLY_MIN_BACKOFF
                    if result["applied"] and result["left"]:
                        wait = 0
        except sa.exc.SQLAlchemyError:
            log.exception("inbox re-applier: state store error; retrying")
            wait = backoff
            backoff = min(REAPPLY_MAX_BACKOFF, backoff * 2)
        if wait:
            stop.wait(wait)


# -- reporting and retention ---------------------------------------------------------------------------
def recent(rt, limit: int = 50) -> list[dict]:
    """The latest deliveries, newest first: time, module, zoho_id, ops_id, outcome, reason, source."""
    with rt.store.engine.connect() as conn:
        rows = conn.execute(
            sa.select(inbox_table).order_by(inbox_table.c.received_at.desc(), inbox_table.c.id.desc()).limit(limit)
        ).all()
    return [
        {
            "time": row.received_at, "module": row.module, "zoho_id": row.zoho_id,
            "ops_id": row.ops_id if row.ops_id is not None else row.ops_id_hint,
            "outcome": row.outcome if row.state == "done" else "accepted",
            "reason": row.reason or "", "source": row.source,
        }
        for row in rows
    ]


def failed_count(rt) -> int:
    """Deliveries given up after MAX_ATTEMPTS refusals by OnPrintShop (shown with a retry button)."""
    with rt.store.engine.connect() as conn:
        return int(conn.execute(
            sa.select(sa.func.count()).select_from(inbox_table)
            .where(inbox_table.c.state == "done", inbox_table.c.outcome == "failed")
        ).scalar())


def retry_failed(rt) -> int:
    """Put the failed deliveries back in line (after the cause was fixed, e.g. the mapping or a
    trigger in OnPrintShop); the re-applier takes them in modified_time order per record, with
    the usual rules, so one that a newer update overtook meanwhile ends as stale. Returns how many."""
    with _decision_txn(rt.store) as conn:
        moved = conn.execute(
            inbox_table.update()
            .where(inbox_table.c.state == "done", inbox_table.c.outcome == "failed")
            .values(state="pending", outcome=None, attempts=0, next_attempt_at=0.0, finished_at=None,
                    reason="retried by the admin")
        ).rowcount
    if moved:
        log.info("inbox: %d failed deliveries put back in line by the admin", moved)
    return int(moved)


def status(rt) -> dict:
    """What `inbox status` prints: deliveries waiting to be written to OnPrintShop (and the age of
    the oldest), deliveries given up on (`failed`), and the newest reason one was refused or put off."""
    t = inbox_table.c
    now = time.time()
    with rt.store.engine.connect() as conn:
        pending, oldest = conn.execute(
            sa.select(sa.func.count(), sa.func.min(t.received_at)).where(t.state == "pending")
        ).one()
        failed = conn.execute(
            sa.select(sa.func.count()).where(t.state == "done", t.outcome == "failed")
        ).scalar()
        last = conn.execute(
            sa.select(t.reason)
            .where(sa.or_(t.state == "pending", t.outcome == "failed"), t.reason.is_not(None))
            .order_by(t.received_at.desc(), t.id.desc()).limit(1)
        ).scalar()
    return {
        "pending": int(pending or 0),
        "failed": int(failed or 0),
        "oldest_pending_seconds": None if oldest is None else round(max(0.0, now - oldest), 1),
        "last_error": last,
    }


def pending_count(rt) -> int:
    with rt.store.engine.connect() as conn:
        return int(conn.execute(
            sa.select(sa.func.count()).select_from(inbox_table).where(inbox_table.c.state == "pending")
        ).scalar() or 0)


def purge(rt, older_than_epoch: float) -> int:
    """Delete finished inbox rows (and loop-guard rows) older than the time; pending rows are kept."""
    with rt.store.begin() as conn:
        count = conn.execute(inbox_table.delete().where(
            inbox_table.c.state == "done", inbox_table.c.received_at < older_than_epoch,
        )).rowcount
        loopguard.purge(conn, older_than_epoch)
    return int(count or 0)
