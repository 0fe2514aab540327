"""What the inbox tells people: latest deliveries, what waits, what failed; retry and retention."""
from __future__ import annotations

import logging
import time

import sqlalchemy as sa

from ..state import dialect
from ..state.tables import inbox_table
from ..sync import loopguard
from .inbox import decision_txn

log = logging.getLogger("gateway.inbound")


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


# How the page groups the outcomes of deliveries.
OUTCOME_GROUPS = {"applied": "applied", "duplicate": "skipped", "stale": "skipped", "not_found": "refused",
                  "conflict": "refused", "invalid": "refused", "failed": "refused"}
GROUPS = ("applied", "skipped", "waiting", "refused")


def hourly(rt, hours: int = 24, now: float | None = None) -> dict[str, list[int]]:
    """Deliveries received per clock hour over the last `hours` hours, oldest first, by group:
    applied, skipped (duplicate or stale), waiting (pending) and refused."""
    first_hour = int((now or time.time()) // 3600) - hours + 1
    t = inbox_table.c
    hour = dialect.epoch_hour(t.received_at, rt.store.dialect).label("hour")
    with rt.store.engine.connect() as conn:
        rows = conn.execute(
            sa.select(hour, t.state, t.outcome, sa.func.count()).where(t.received_at >= first_hour * 3600)
            .group_by(hour, t.state, t.outcome)
        ).all()
    counts = {group: [0] * hours for group in GROUPS}
    for at, state, outcome, count in rows:
        index = int(at) - first_hour
        if 0 <= index < hours:
            group = "waiting" if state == "pending" else OUTCOME_GROUPS.get(outcome, "refused")
            counts[group][index] += int(count)
    return counts


def pending_count(rt) -> int:
    with rt.store.engine.connect() as conn:
        return int(conn.execute(
            sa.select(sa.func.count()).select_from(inbox_table).where(inbox_table.c.state == "pending")
        ).scalar() or 0)


def failed_count(rt) -> int:
    """Deliveries given up after too many refusals by OnPrintShop (shown with a retry button)."""
    with rt.store.engine.connect() as conn:
        return int(conn.execute(
            sa.select(sa.func.count()).select_from(inbox_table)
            .where(inbox_table.c.state == "done", inbox_table.c.outcome == "failed")
        ).scalar())


def retry_failed(rt) -> int:
    """Put the failed deliveries back in line (after the cause was fixed); the re-applier takes
    them in order with the usual rules. Returns how many."""
    with decision_txn(rt.store) as conn:
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
    """What `inbox status` prints: pending (and the oldest's age), failed, the newest reason."""
    t = inbox_table.c
    now = time.time()
    with rt.store.engine.connect() as conn:
        pending, oldest = conn.execute(
            sa.select(sa.func.count(), sa.func.min(t.received_at)).where(t.state == "pending")
        ).one()
        failed = conn.execute(sa.select(sa.func.count()).where(t.state == "done", t.outcome == "failed")).scalar()
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


def purge(rt, older_than_epoch: float) -> int:
    """Delete finished inbox rows (and loop-guard rows) older than the time; pending rows are kept."""
    with rt.store.begin() as conn:
        count = conn.execute(inbox_table.delete().where(
            inbox_table.c.state == "done", inbox_table.c.received_at < older_than_epoch,
        )).rowcount
        loopguard.purge(conn, older_than_epoch)
    return int(count or 0)
