"""The durable push queue (`gw_jobs`): one job per OnPrintShop record waiting to go to Zoho.

A job names a record, never its data: the payload is built from the record's current row
when the job is sent, so the latest state goes out however many changes were merged.

States: `pending` (waiting for `next_try_at`), `in_flight` (claimed by a worker under a
lease), `done`, `dead` (gave up; keeps its last error until `retry_dead`). While a job is
pending, in flight or dead it holds `active_key` = "<module>:<ops_id>" under a unique index,
so each record has at most one such job: a new change to a pending job merges into it, one to
an in-flight job marks it `requeue` (it goes back to pending when the send finishes), one to
a dead job revives it. Done jobs drop the key and are purged after GATEWAY_RETENTION_DAYS.

Workers claim jobs atomically: `SELECT … FOR UPDATE SKIP LOCKED` on MariaDB/MySQL 8 and
PostgreSQL, SQLite's single writer (`BEGIN IMMEDIATE`) otherwise. A worker renews its leases
while it runs; jobs of a killed process are reclaimed once their lease lapses (at-least-once
delivery: Zoho's upsert makes a repeat harmless).

The queue can be paused for the whole deployment (setting `outbound.pause`): Zoho needs
re-authorization, the daily call budget is spent, or Zoho answered 429 (slow down until a
time). A pause burns no attempts, and a new one never shortens the one in force (the later end
wins; one that waits for the admin stays until the admin acts).
"""
from __future__ import annotations

import dataclasses
import json
import random
import time

import sqlalchemy as sa

from ..store import metadata, settings_table

MODULES = ("Contacts", "Deals")
LEASE_SECONDS = 30.0  # renewed every LEASE_SECONDS / 3 by the worker holding it
PAUSE_SETTING = "outbound.pause"
LAST_ERROR_SETTING = "outbound.last_error"
ERROR_MAX = 1000

jobs_table = sa.Table(
    "gw_jobs",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("module", sa.String(16), nullable=False),
    sa.Column("ops_id", sa.BigInteger, nullable=False),
    # "<module>:<ops_id>" while pending/in_flight/dead, NULL when done: one live job per record.
    sa.Column("active_key", sa.String(48), nullable=True),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("force_send", sa.Boolean, nullable=False, default=False),
    sa.Column("requeue", sa.Boolean, nullable=False, default=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("next_try_at", sa.Double, nullable=False),
    sa.Column("lease_holder", sa.String(100), nullable=True),
    sa.Column("lease_expires_at", sa.Double, nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("updated_at", sa.Double, nullable=False),
    sa.Index("ux_gw_jobs_active", "active_key", unique=True),
    sa.Index("ix_gw_jobs_claim", "state", "module", "next_try_at"),
    sa.Index("ix_gw_jobs_holder", "lease_holder"),
)

# The change poller's memory of the row versions it queued (gateway.outbound.poller): it reads
# a window behind its watermark again every round, and a version found here is not queued
# again. Kept here so the table is created with the queue's; rows leave once they fall out of
# that window.
polled_versions_table = sa.Table(
    "gw_polled_versions",
    metadata,
    sa.Column("table_key", sa.String(16), primary_key=True),
    sa.Column("ops_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("last_modified", sa.String(19), primary_key=True),  # 'YYYY-MM-DD HH:MM:SS', OPS_TIMEZONE
    sa.Index("ix_gw_polled_versions_age", "table_key", "last_modified"),
)


class UnknownModule(ValueError):
    """A module name that is neither Contacts nor Deals."""


# -- retry policy ---------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """When to try a failed send again: exponential backoff with full jitter, then give up.

    After the n-th failed attempt the next one waits a random time between 0 and
    min(cap, base × 2^(n-1)). With the defaults the ceilings are 30 s, 1, 2, 4, 8, 16, 32 min,
    1 h 4 min, 2 h 8 min, 4 h 16 min, then 6 h for the remaining attempts: 18 attempts in all,
    about a day on average (at most about two) before the job is dead.
    """

    base: float = 30.0
    cap: float = 6 * 3600.0
    max_attempts: int = 18

    def ceiling(self, attempts: int) -> float:
        return min(self.cap, self.base * 2 ** max(0, attempts - 1))

    def next_delay(self, attempts: int, rng=random) -> float | None:
        """Seconds to wait after `attempts` failed attempts, or None: give up (dead)."""
        if attempts >= self.max_attempts:
            return None
        return rng.uniform(0, self.ceiling(attempts))

    def schedule(self) -> list[float]:
        """The ceilings of every wait, in order (for the README and the tests)."""
        return [self.ceiling(n) for n in range(1, self.max_attempts)]


DEFAULT_POLICY = RetryPolicy()
# 429 without Retry-After: the whole queue waits, growing with each 429 in a row.
THROTTLE_POLICY = RetryPolicy(base=5.0, cap=300.0, max_attempts=10**9)


@dataclasses.dataclass(frozen=True)
class Job:
    id: int
    module: str
    ops_id: int
    attempts: int
    force: bool


def _key(module: str, ops_id: int) -> str:
    return f"{module}:{int(ops_id)}"


def check_module(module: str) -> str:
    if module not in MODULES:
        raise UnknownModule(f"unknown Zoho module {module!r}: use Contacts or Deals")
    return module


# -- feeding the queue ------------------------------------------------------------------------
def enqueue(rt, module: str, ops_ids, force: bool = False, delay: float = 0.0) -> int:
    """Queue a push of these records (merging into their waiting jobs); returns how many."""
    check_module(module)
    ids = sorted({int(i) for i in ops_ids})
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        for attempt in range(5):
            try:
                rt.store.transaction(lambda conn: enqueue_in(conn, rt.store, module, chunk, force, delay))
                break
            except (sa.exc.IntegrityError, sa.exc.OperationalError):
                # Another process inserted one of these keys (or a deadlock): read again and merge.
                if attempt == 4:
                    raise
                time.sleep(random.uniform(0.01, 0.1))
    return len(ids)


def enqueue_in(conn, store, module: str, ops_ids, force: bool = False, delay: float = 0.0) -> int:
    """`enqueue` inside the caller's transaction (e.g. with the events API's webhook-id, so both
    commit or neither does). Run it through `transaction` and retry the whole of it on an
    IntegrityError: another process may have inserted one of these keys meanwhile."""
    check_module(module)
    ids = sorted({int(i) for i in ops_ids})
    for start in range(0, len(ids), 500):
        _merge(conn, store, module, ids[start:start + 500], force, delay)
    return len(ids)


def _merge(conn, store, module, chunk, force, delay) -> None:
    now = time.time()
    keys = [_key(module, i) for i in chunk]
    t = jobs_table.c
    query = sa.select(t.id, t.ops_id, t.state).where(t.active_key.in_(keys))
    if store.skip_locked:
        query = query.with_for_update()
    existing = conn.execute(query).all()
    by_state: dict[str, list[int]] = {}
    for row in existing:
        by_state.setdefault(row.state, []).append(row.id)
    if by_state.get("pending") and force:
        conn.execute(jobs_table.update().where(t.id.in_(by_state["pending"])).values(force_send=True, updated_at=now))
    if by_state.get("in_flight"):
        values = {"requeue": True, "updated_at": now}
        if force:
            values["force_send"] = True
        conn.execute(jobs_table.update().where(t.id.in_(by_state["in_flight"])).values(**values))
    if by_state.get("dead"):
        conn.execute(
            jobs_table.update()
            .where(t.id.in_(by_state["dead"]), t.state == "dead")
            .values(state="pending", attempts=0, next_try_at=now + delay, force_send=force, updated_at=now)
        )
    known = {int(row.ops_id) for row in existing}
    fresh = [
        dict(module=module, ops_id=i, active_key=_key(module, i), state="pending", force_send=force, requeue=False,
             attempts=0, next_try_at=now + delay, created_at=now, updated_at=now)
        for i in chunk if i not in known
    ]
    if fresh:
        conn.execute(jobs_table.insert(), fresh)


def pending_ids(rt, module: str, ops_ids) -> set[int]:
    """Which of these records have a job pending or in flight."""
    keys = [_key(module, i) for i in ops_ids]
    if not keys:
        return set()
    with rt.store.engine.connect() as conn:
        return {int(i) for i in conn.execute(
            sa.select(jobs_table.c.ops_id).where(jobs_table.c.active_key.in_(keys), jobs_table.c.state.in_(("pending", "in_flight")))
        ).scalars()}


def dead_errors(rt, module: str, ops_ids) -> dict[int, str]:
    """{ops_id: last error} for those of these records whose job is dead."""
    keys = [_key(module, i) for i in ops_ids]
    if not keys:
        return {}
    with rt.store.engine.connect() as conn:
        rows = conn.execute(
            sa.select(jobs_table.c.ops_id, jobs_table.c.last_error).where(jobs_table.c.active_key.in_(keys), jobs_table.c.state == "dead")
        ).all()
    return {int(r.ops_id): r.last_error or "" for r in rows}


# -- workers: claim, renew, finish ------------------------------------------------------------
def claim(store, holder: str, module: str, limit: int = 100, lease_seconds: float = LEASE_SECONDS) -> list[Job]:
    """Claim up to `limit` due jobs of one module for `holder`, oldest first."""
    now = time.time()
    t = jobs_table.c
    query = (
        sa.select(t.id, t.ops_id, t.attempts, t.force_send)
        .where(t.state == "pending", t.module == module, t.next_try_at <= now)
        .order_by(t.next_try_at, t.id)
        .limit(limit)
    )
    if store.skip_locked:
        query = query.with_for_update(skip_locked=True)

    def take(conn):
        rows = conn.execute(query).all()
        if rows:
            conn.execute(
                jobs_table.update()
                .where(t.id.in_([r.id for r in rows]), t.state == "pending")
                .values(state="in_flight", lease_holder=holder, lease_expires_at=now + lease_seconds, updated_at=now)
            )
        return rows

    rows = store.transaction(take)
    return [Job(r.id, module, int(r.ops_id), r.attempts, bool(r.force_send)) for r in rows]


def renew(store, holder: str, lease_seconds: float = LEASE_SECONDS) -> int:
    """Extend every lease `holder` has (the worker's heartbeat)."""
    t = jobs_table.c
    return store.run(
        jobs_table.update()
        .where(t.lease_holder == holder, t.state == "in_flight")
        .values(lease_expires_at=time.time() + lease_seconds)
    )


def reclaim_lapsed(store) -> int:
    """Jobs whose worker died (lease lapsed) go back to pending; no attempt is counted."""
    now = time.time()
    t = jobs_table.c
    return store.run(
        jobs_table.update()
        .where(t.state == "in_flight", t.lease_expires_at < now)
        .values(state="pending", lease_holder=None, lease_expires_at=None, next_try_at=now, updated_at=now)
    )


def release(store, holder: str, job_ids=None) -> int:
    """Hand leases back unsent (worker stopping, or a batch not sent): pending again at once."""
    now = time.time()
    t = jobs_table.c
    query = jobs_table.update().where(t.lease_holder == holder, t.state == "in_flight")
    if job_ids is not None:
        if not job_ids:
            return 0
        query = query.where(t.id.in_(list(job_ids)))
    return store.run(query.values(state="pending", lease_holder=None, lease_expires_at=None, updated_at=now))


def _held(holder, job_ids):
    t = jobs_table.c
    return (t.id.in_(list(job_ids)), t.lease_holder == holder, t.state == "in_flight")


def complete(conn, holder: str, job_ids, note: str | None = None) -> None:
    """Sent (or nothing to send): done, or pending again when a change arrived meanwhile."""
    if not job_ids:
        return
    now = time.time()
    _finish(conn, holder, job_ids, final="done", final_values={"active_key": None, "last_error": note},
            requeued_values={"attempts": 0, "last_error": None}, now=now)


def _finish(conn, holder: str, job_ids, final: str, final_values: dict, requeued_values: dict, now: float) -> None:
    """End a send in ONE statement: `final` (done/dead), or pending again at once when a change
    was merged while the job was in flight (`requeue`).

    One statement, not "requeued ones first, then the rest": between two statements a merge could
    set `requeue` on a row the first skipped, and the second would then end it, losing the change.
    A single UPDATE waits for the merge's row lock and decides on the row as the merge left it.
    `requeue` is assigned last because MySQL's UPDATE reads columns already assigned earlier in
    the same SET. The requeued job keeps `force_send` (a forced push merged in flight still counts).
    """
    t = jobs_table.c
    requeued = t.requeue == sa.true()
    assignments = [(t.state, sa.case((requeued, "pending"), else_=final)),
                   (t.next_try_at, sa.case((requeued, now), else_=t.next_try_at))]
    for name in sorted(set(final_values) | set(requeued_values)):
        column = t[name]
        assignments.append((column, sa.case(
            (requeued, requeued_values[name] if name in requeued_values else column),
            else_=final_values[name] if name in final_values else column,
        )))
    assignments += [(t.lease_holder, None), (t.lease_expires_at, None), (t.updated_at, now), (t.requeue, False)]
    conn.execute(jobs_table.update().where(*_held(holder, job_ids)).ordered_values(*assignments))


def defer(conn, holder: str, job_ids, until: float, note: str | None = None) -> None:
    """Back to pending until `until`, no attempt counted (waiting for a Contact, throttled, paused)."""
    if not job_ids:
        return
    values = dict(state="pending", lease_holder=None, lease_expires_at=None, next_try_at=until, updated_at=time.time())
    if note is not None:
        values["last_error"] = note[:ERROR_MAX]
    conn.execute(jobs_table.update().where(*_held(holder, job_ids)).values(**values))


def fail(conn, holder: str, jobs: list[Job], error: str, policy: RetryPolicy = DEFAULT_POLICY, rng=random) -> list[Job]:
    """A counted failed attempt: retry later per the policy, or dead; returns the jobs now dead.

    Jobs failing together are retried together (one jittered time per attempt count), so
    they keep going out in the same batches.
    """
    now = time.time()
    error = error[:ERROR_MAX]
    dead: list[Job] = []
    by_attempts: dict[int, list[Job]] = {}
    for job in jobs:
        by_attempts.setdefault(job.attempts + 1, []).append(job)
    for attempts, group in by_attempts.items():
        ids = [j.id for j in group]
        delay = policy.next_delay(attempts, rng)
        if delay is None:
            bury(conn, holder, ids, error, attempts=attempts)
            dead.extend(group)
        else:
            conn.execute(
                jobs_table.update().where(*_held(holder, ids))
                .values(state="pending", attempts=attempts, next_try_at=now + delay, lease_holder=None,
                        lease_expires_at=None, last_error=error, updated_at=now)
            )
    return dead


def bury(conn, holder: str, job_ids, error: str, attempts: int | None = None) -> None:
    """Dead: Zoho refused the record, or the retries ran out. A change that arrived meanwhile revives it."""
    if not job_ids:
        return
    t = jobs_table.c
    error = error[:ERROR_MAX]
    _finish(conn, holder, job_ids, final="dead",
            final_values={"attempts": (t.attempts + 1) if attempts is None else attempts, "last_error": error},
            requeued_values={"attempts": 0, "last_error": error}, now=time.time())


def note_error(store, message: str) -> None:
    """Remember the latest error for `queue status` (never a secret: Zoho's message or ours)."""
    store.set_setting(LAST_ERROR_SETTING, {"message": message[:ERROR_MAX], "at": time.time()})


# -- pause --------------------------------------------------------------------------------------
# Pauses that end when the admin connects Zoho again (worker.paused_now), never by the clock.
UNTIL_CONNECTED = ("reauthorization", "not_configured")


def pause(store, kind: str, reason: str, until: float | None = None, streak: int = 0) -> dict:
    """Pause the whole queue (kind 'reauthorization' | 'not_configured' | 'budget' | 'refused' |
    'throttled') until `until`, or with None until the admin acts; returns the pause in force after.

    A pause never cuts short the one in force: a timed pause replaces it only when it ends later,
    and a pause without an end is never replaced by one with an end (a 429 answered to a sender in
    flight must not turn "re-authorize Zoho" into a wait that ends by itself).
    """
    def decide(current, now):
        if _in_force(current, now) and until is not None:
            if current.get("until") is None or current["until"] >= until:
                return current
        return {"kind": kind, "reason": reason, "until": until, "since": now, "streak": streak}

    return _change_pause(store, decide)


def pause_throttled(store, retry_after: float | None, policy: RetryPolicy = THROTTLE_POLICY) -> dict:
    """Zoho answered 429: pause until Retry-After, or for a backoff that grows with each 429 pause
    in a row (`streak`, kept after the pause ends until a send goes through: end_throttle_streak).

    The 429s of senders that were in flight together belong to one pause: while a 429 pause is in
    force another one can only move its end later (a longer Retry-After) and does not count again.
    """
    def decide(current, now):
        in_force = _in_force(current, now)
        if in_force and current.get("kind") == "throttled":
            if retry_after is None or now + retry_after <= current["until"]:
                return current
            streak, until = int(current.get("streak") or 0), now + retry_after
        else:
            streak = (int(current.get("streak") or 0) if current and current.get("kind") == "throttled" else 0) + 1
            until = now + (retry_after if retry_after is not None else policy.next_delay(streak) + 1.0)
            if in_force and (current.get("until") is None or current["until"] >= until):
                return current  # a longer pause for another reason is in force
        return {"kind": "throttled", "until": until, "since": now, "streak": streak,
                "reason": f"Zoho asked us to slow down (HTTP 429); sending resumes at {clock_time(until)} UTC"}

    return _change_pause(store, decide)


def resume(store, kinds=None) -> bool:
    """End the pause (only one of these kinds, when given); True when one was ended."""
    def decide(current, now):
        if current is None or (kinds is not None and current.get("kind") not in kinds):
            return current
        return None

    return _change_pause(store, decide, ended=True)


def end_throttle_streak(store) -> bool:
    """A send went through: forget the 429 streak, unless a new pause is in force by now."""
    def decide(current, now):
        if current and current.get("kind") == "throttled" and not _in_force(current, now):
            return None
        return current

    return _change_pause(store, decide, ended=True)


def current_pause(store, now: float | None = None) -> dict | None:
    """The pause in force, or None (a pause whose time has passed is over)."""
    state = store.get_setting(PAUSE_SETTING)
    return state if _in_force(state, now or time.time()) else None


def throttle_streak(store) -> int:
    """How many 429 pauses in a row (kept after the pause ends, cleared by a successful send)."""
    state = store.get_setting(PAUSE_SETTING)
    return int(state.get("streak", 0)) if state and state.get("kind") == "throttled" else 0


def clock_time(epoch: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(epoch))


def _in_force(state: dict | None, now: float) -> bool:
    return bool(state) and (state.get("until") is None or state["until"] > now)


def _change_pause(store, decide, ended: bool = False):
    """Read the pause, `decide(current, now)` the new one, write it if it changed: one transaction,
    the setting's row locked (FOR UPDATE; SQLite's BEGIN IMMEDIATE), so two senders' 429s are
    decided one after the other and neither overwrites what the other just decided.

    Returns the pause decided (or, with `ended`, whether the pause was ended)."""
    query = sa.select(settings_table.c.value).where(settings_table.c.name == PAUSE_SETTING)
    if store.skip_locked:
        query = query.with_for_update()

    def work(conn):
        row = conn.execute(query).first()
        if row is None:
            # Make the row ours before deciding: a concurrent first insert makes this fail (and
            # we decide again, on its pause), where an UPDATE would later overwrite it unread.
            conn.execute(settings_table.insert().values(name=PAUSE_SETTING, value="null", updated_at=time.time()))
        current = json.loads(row[0]) if row else None
        decided = decide(current, time.time())
        if decided is not current or row is None:
            store.set_setting(PAUSE_SETTING, decided, conn=conn)
        return (current is not None and decided is None) if ended else decided

    for attempt in range(3):
        try:
            return store.transaction(work)
        except sa.exc.IntegrityError:
            # Two first pauses inserted the setting's row at once: it exists now, so decide again.
            if attempt == 2:
                raise


# -- figures and operator actions ---------------------------------------------------------------
def status(rt) -> dict:
    """Exactly the keys of `queue status --json` (CONTRACT §3)."""
    now = time.time()
    t = jobs_table.c
    with rt.store.engine.connect() as conn:
        counts = dict(conn.execute(sa.select(t.state, sa.func.count()).group_by(t.state)).all())
        oldest = conn.execute(sa.select(sa.func.min(t.created_at)).where(t.state == "pending")).scalar()
    paused = current_pause(rt.store, now)
    last = rt.store.get_setting(LAST_ERROR_SETTING)
    return {
        "pending": int(counts.get("pending", 0)),
        "in_flight": int(counts.get("in_flight", 0)),
        "done": int(counts.get("done", 0)),
        "dead": int(counts.get("dead", 0)),
        "paused": paused is not None,
        "paused_reason": paused["reason"] if paused else None,
        "oldest_pending_seconds": None if oldest is None else round(max(0.0, now - float(oldest)), 1),
        "last_error": last["message"] if last else None,
    }


def dead_jobs(rt, limit: int = 50) -> list[dict]:
    t = jobs_table.c
    with rt.store.engine.connect() as conn:
        rows = conn.execute(
            sa.select(t.id, t.module, t.ops_id, t.attempts, t.last_error, t.updated_at)
            .where(t.state == "dead").order_by(t.updated_at.desc(), t.id.desc()).limit(limit)
        ).all()
    return [
        {"id": r.id, "module": r.module, "ops_id": int(r.ops_id), "attempts": r.attempts, "last_error": r.last_error,
         "updated_at": r.updated_at}
        for r in rows
    ]


def retry_dead(rt, ids=None) -> int:
    """Dead jobs (all, or these ids) back to pending with fresh attempts; returns how many."""
    now = time.time()
    t = jobs_table.c
    query = jobs_table.update().where(t.state == "dead")
    if ids is not None:
        ids = [int(i) for i in ids]
        if not ids:
            return 0
        query = query.where(t.id.in_(ids))
    return rt.store.run(query.values(state="pending", attempts=0, next_try_at=now, updated_at=now))


def purge_finished(rt, older_than_epoch: float) -> int:
    t = jobs_table.c
    return rt.store.run(jobs_table.delete().where(t.state == "done", t.updated_at < older_than_epoch))


def calls_today(rt) -> int:
    """Zoho API calls in the rolling last 24 hours (every process)."""
    from ..zoho import gate

    return gate.count_last_day(rt.store, "calls")


def pushes_today(rt) -> int:
    """Records Zoho accepted in the rolling last 24 hours."""
    from ..zoho import gate

    return gate.count_last_day(rt.store, "pushes")
