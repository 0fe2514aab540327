"""What the inbox decides for a delivery (its `Outcome`), the transaction it decides in, and the
rules the one-row path and group commit's batches share (docs/inbound.md, "The inbox")."""
from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass

import sqlalchemy as sa

from ..ops import OpsRefused
from ..state import dialect
from ..state.tables import inbox_table

HTTP_STATUS = {
    "applied": 200, "duplicate": 200, "stale": 200, "accepted": 202,
    "not_found": 404, "conflict": 409, "invalid": 422, "failed": 422,
}
TERMINAL = ("applied", "duplicate", "stale", "not_found", "conflict", "invalid", "failed")

RETRY_MIN_BACKOFF = 1.0
RETRY_MAX_BACKOFF = 30.0
BUSY_RETRY_SECONDS = 2.0    # a record locked in OnPrintShop is tried again after this (not counted)
LATER = "stored; the OnPrintShop database is unreachable, it will be applied later"
BUSY = "stored; the OnPrintShop record is locked, it will be applied shortly"
WAITING = "stored; an earlier update of this record is applied first"
STALE = "older than the last update applied from Zoho for this record"

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


@contextlib.contextmanager
def decision_txn(store):
    """The state-store transaction that decides and records: BEGIN IMMEDIATE on SQLite (one
    writer), else row locks (`FOR UPDATE` on the records' markers) at READ COMMITTED."""
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
        try:
            conn.commit()
        except BaseException:
            conn.invalidate()  # a COMMIT that failed leaves the transaction unknown: never hand it to the pool
            raise


def new_row(module: str, update, source: str, now: float) -> dict:
    """The inbox row of a delivery not stored yet, as 'pending'."""
    return dict(
        received_at=now, source=source, module=module, zoho_id=update.zoho_id, ops_id_hint=update.ops_id,
        modified_time=update.modified_time, time_given=update.modified_time_given,
        fields=json.dumps(update.fields, ensure_ascii=False), fingerprint=update.fingerprint(),
        state="pending", attempts=0, next_attempt_at=now, outcome=None, reason=None, ops_id=None, finished_at=None,
    )  # every column, so that a batch's rows go in one multi-row INSERT


def done_values(status: str, reason: str, ops_id=None, parameter=None) -> dict:
    """The columns of a finished inbox row (a conflict's or invalid value's reason names the parameter)."""
    stored_reason = f"{parameter}: {reason}" if parameter and status in ("invalid", "conflict") else reason
    return {"state": "done", "outcome": status, "reason": stored_reason[:500], "ops_id": ops_id, "finished_at": time.time()}


def retry_delay(attempts: int) -> float:
    return min(RETRY_MAX_BACKOFF, RETRY_MIN_BACKOFF * 2 ** min(attempts, 10))


def attempt_reason(exc: Exception) -> str:
    """What the admin page shows for a failed attempt: OnPrintShop's own refusal, else the error's type."""
    return str(exc) if isinstance(exc, OpsRefused) else f"{exc.__class__.__name__} while applying"


def seen_before(conn, module: str, zoho_id: str, modified_time: float, fingerprint: str) -> bool:
    return conn.execute(_SEEN_BEFORE, {"module": module, "zoho_id": zoho_id, "modified_time": modified_time,
                                       "fingerprint": fingerprint}).first() is not None
