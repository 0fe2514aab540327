"""The admin audit trail (`gw_audit`, plus a log line), the login attempts the throttle counts
(`gw_login_failures`) and sessions ended by logout (`gw_admin_ended_sessions`); never a secret
(docs/security.md)."""
from __future__ import annotations

import logging
import time

import sqlalchemy as sa

from .state.tables import audit_table, ended_sessions_table, login_failures_table

log = logging.getLogger("gateway.admin")

ACTION_MAX = 64
DETAIL_MAX = 500

def record(rt, who: str, action: str, detail: str = "") -> None:
    """Write one audit row and one log line. `detail` must never contain a secret."""
    who = (who or "unknown")[:100]
    action = action[:ACTION_MAX]
    detail = (detail or "")[:DETAIL_MAX]
    with rt.store.begin() as conn:
        conn.execute(audit_table.insert().values(at=time.time(), who=who, action=action, detail=detail))
    log.info("admin action=%s who=%s detail=%s", action, who, detail)


def recent(rt, limit: int = 20) -> list[dict]:
    """The newest audit rows first: dicts with time, who, action, detail."""
    with rt.store.engine.connect() as conn:
        rows = conn.execute(
            sa.select(audit_table.c.at, audit_table.c.who, audit_table.c.action, audit_table.c.detail)
            .order_by(audit_table.c.id.desc())
            .limit(limit)
        ).all()
    return [{"time": row.at, "who": row.who, "action": row.action, "detail": row.detail} for row in rows]


def purge(rt, older_than_epoch: float) -> int:
    """Delete audit rows older than the given time; returns how many."""
    with rt.store.begin() as conn:
        return conn.execute(audit_table.delete().where(audit_table.c.at < older_than_epoch)).rowcount


def note_login_attempt(rt, address: str, now: float | None = None) -> int:
    """Record one login attempt from `address` before its password is checked (one INSERT); returns
    its row id. It counts as a failure until `forget_login_attempt` withdraws it."""
    now = time.time() if now is None else now
    row = {"address": (address or "unknown")[:64], "at": now}
    return int(rt.store.transaction(lambda conn: conn.execute(login_failures_table.insert().values(**row))
                                    .inserted_primary_key[0]))


def forget_login_attempt(rt, attempt_id: int) -> None:
    """Withdraw an attempt recorded by `note_login_attempt`: it was not a failure. Through
    Store.transaction: on MariaDB a parallel prune may deadlock with it, and that is rerun."""
    rt.store.transaction(
        lambda conn: conn.execute(login_failures_table.delete().where(login_failures_table.c.id == attempt_id))
    )


def login_failures_since(rt, address: str | None, since: float, exclude_id: int | None = None,
                         limit: int | None = None) -> list[float]:
    """The times of failed (or still unchecked) logins at or after `since`, oldest first: from
    `address`, or from every address with None (the newest `limit`); `exclude_id` leaves one out."""
    t = login_failures_table.c
    query = sa.select(t.at).where(t.at >= since)
    if address is not None:
        query = query.where(t.address == (address or "unknown")[:64])
    if exclude_id is not None:
        query = query.where(t.id != exclude_id)
    query = query.order_by(t.at.desc())
    if limit is not None:
        query = query.limit(limit)
    with rt.store.engine.connect() as conn:
        return sorted(conn.execute(query).scalars())


def purge_login_failures(rt, older_than_epoch: float, keep_seconds: float = 3600) -> int:
    """Drop login attempts older than an hour (no throttle looks that far back) or the retention."""
    cutoff = max(older_than_epoch, time.time() - keep_seconds)
    return rt.store.run(login_failures_table.delete().where(login_failures_table.c.at < cutoff))


def end_session(rt, session_id: str, until: float) -> None:
    """Remember that this admin session ended (until `until`, when it would have expired anyway)."""
    now = time.time()

    def remember(conn):
        conn.execute(ended_sessions_table.delete().where(ended_sessions_table.c.until < now))
        already = conn.execute(
            sa.select(ended_sessions_table.c.session_id).where(ended_sessions_table.c.session_id == session_id)
        ).first()
        if already is None:
            conn.execute(ended_sessions_table.insert().values(session_id=session_id[:64], until=until))

    rt.store.transaction(remember)  # parallel logouts prune side by side: rerun after a deadlock


def session_ended(rt, session_id: str) -> bool:
    with rt.store.engine.connect() as conn:
        return conn.execute(
            sa.select(ended_sessions_table.c.session_id).where(ended_sessions_table.c.session_id == session_id[:64])
        ).first() is not None
