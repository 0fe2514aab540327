"""The durable push queue (`gw_jobs`): at most one live job per OnPrintShop record, naming it, never
its data; later changes merge into it; workers claim jobs under a lease (docs/outbound.md,
"The queue")."""
from __future__ import annotations

import dataclasses
import random
import time

import sqlalchemy as sa

from ..state.engine import lost_race, rerun
from ..state.tables import jobs_table
from ..sync.modules import NAMES as MODULES
from .pause import current_pause
from .retry import DEFAULT_POLICY, RetryPolicy

LEASE_SECONDS = 30.0  # renewed every LEASE_SECONDS / 3 by the worker holding it
LAST_ERROR_SETTING = "outbound.last_error"
ERROR_MAX = 1000


class UnknownModule(ValueError):
    """A module name that is neither Contacts nor Deals."""


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
        # Another process may insert one of these keys meanwhile: read again and merge.
        rerun(lambda chunk=chunk: rt.store.transaction(lambda conn: enqueue_in(conn, rt.store, module, chunk, force, delay)),
              attempts=5, when=lost_race)
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
    """End a send in ONE statement (why: docs/outbound.md, "The queue"): `final` (done/dead), or
    pending again at once when a change was merged in flight (`requeue`, which keeps `force_send`)."""
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
    """A counted failed attempt: retry later per the policy, or dead; returns the jobs now dead. Jobs
    failing together get one jittered time per attempt count, so they stay in the same batches."""
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


# -- figures and operator actions ---------------------------------------------------------------
def status(rt) -> dict:
    """Exactly the keys of `queue status --json` (docs/commands.md)."""
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
