"""The re-applier: applies deliveries stored pending, per record in `modified_time` order."""
from __future__ import annotations

import logging
import time

import sqlalchemy as sa

from ..ops import OpsBusy, OpsNeedsMoreCalls, OpsUnavailable
from ..state import dialect
from ..state.leases import leased_loop
from ..state.tables import inbox_table
from . import inbox, reports

log = logging.getLogger("gateway.inbound")

POLL_SECONDS = 1.0
MIN_BACKOFF = 1.0
MAX_BACKOFF = 30.0
MORE_CALLS_RETRY_SECONDS = 30.0  # a row that needs more API calls, when they were not free at once
LEASE = "inbox.reapplier"


def apply_row(rt, inbox_id: int, ample: bool = False) -> inbox.Outcome:
    """Decide and apply one stored delivery in its own transaction; raises OpsUnavailable, OpsBusy.
    `ample`: the change needed more API calls than a delivery sets aside; it may take more."""
    with rt.ops.writer(connect_now=rt.store.dialect == dialect.SQLITE, write_email=rt.config["GATEWAY_WRITE_BACK_EMAIL"],
                      ample=ample) as writer, inbox.decision_txn(rt.store) as sconn:
        row = inbox.load_row(sconn, inbox_id)
        if row is None:
            return inbox.Outcome("failed", "no such inbox row")
        if row.state == "done":
            return inbox.Outcome(row.outcome, row.reason or "", inbox_id=inbox_id, ops_id=row.ops_id)
        return inbox.decide_and_apply(rt, sconn, writer, row)


def _apply_with_more_calls(rt, inbox_id: int) -> inbox.Outcome | None:
    """A row that needed more API calls than a delivery sets aside, tried alone with more. None when
    that cannot be now: the row waits (or, when even that was too few, counts an attempt), and the
    other records go on; this row's needs are not an outage."""
    try:
        return apply_row(rt, inbox_id, ample=True)
    except OpsNeedsMoreCalls:
        reason = "it needs more OnPrintShop API calls than one change may take"
        log.warning("inbox row %s: %s", inbox_id, reason)
        with inbox.decision_txn(rt.store) as conn:
            inbox.count_attempt(conn, inbox_id, reason)
    except OpsUnavailable as exc:  # the larger reserve was not free now (or OnPrintShop went away)
        log.info("inbox row %s waits for more OnPrintShop API calls: %s", inbox_id, exc)
        postpone(rt, inbox_id, MORE_CALLS_RETRY_SECONDS)
    return None


def postpone(rt, inbox_id: int, seconds: float) -> None:
    """Try a pending row again after `seconds`, without counting an attempt."""
    rt.store.run(inbox_table.update().where(inbox_table.c.id == inbox_id, inbox_table.c.state == "pending")
                 .values(next_attempt_at=time.time() + seconds))


def reapply_pending(rt, limit: int = 500) -> dict:
    """One pass over the due pending rows, record by record in order; stops when OnPrintShop is away.
    Returns {"applied": n, "left": n, "unavailable": bool}."""
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
            try:
                outcome = apply_row(rt, row.id)
            except OpsNeedsMoreCalls:
                outcome = _apply_with_more_calls(rt, row.id)
                if outcome is None:
                    blocked.add(record)
                    continue
        except OpsUnavailable:
            return {"applied": done, "left": len(rows) - done, "unavailable": True}
        except OpsBusy:
            blocked.add(record)  # locked in OnPrintShop: tried again a bit later, others go on now
            postpone(rt, row.id, inbox.BUSY_RETRY_SECONDS)
            continue
        except Exception as exc:
            log.exception("inbox row %s could not be applied", row.id)
            with inbox.decision_txn(rt.store) as conn:
                inbox.count_attempt(conn, row.id, inbox.attempt_reason(exc))
            blocked.add(record)
            continue
        if outcome.status == "accepted":
            blocked.add(record)
        else:
            done += 1
    return {"applied": done, "left": len(rows) - done, "unavailable": False}


def run(rt, stop) -> None:
    """Background task: apply pending rows whenever there are some, backing off while OnPrintShop is away."""
    backoff = [MIN_BACKOFF]

    def work():
        result = reapply_pending(rt)
        if result["unavailable"]:
            wait, backoff[0] = backoff[0], min(MAX_BACKOFF, backoff[0] * 2)
            return wait
        backoff[0] = MIN_BACKOFF
        return 0 if result["applied"] and result["left"] else POLL_SECONDS

    leased_loop(rt.store, stop, LEASE, work, every=POLL_SECONDS, lease_seconds=120,
                wanted=lambda: reports.pending_count(rt) > 0, log=log, what="inbox re-applier")
