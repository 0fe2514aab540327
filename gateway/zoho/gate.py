"""The deployment-wide limits on Zoho API calls, kept in the state store: the concurrency cap (permits
of the one limiter) and the daily call budget (a meter that also counts records pushed, failed and
given up) (docs/ops-api.md, "One limiter for both APIs"; docs/outbound.md)."""
from __future__ import annotations

import contextlib
import time

import sqlalchemy as sa

from ..state.engine import rerun
from ..state.limiter import Limiter, NoPermit
from ..state.tables import meter_table
from .errors import BudgetExhausted, Unavailable

# Longer than a call may run at Zoho: the client gives up after 10 s to connect and 30 s without an
# answer, and a call it gave up on (or whose process was killed) may still be running there.
SLOT_LEASE_SECONDS = 45.0
SLOT_WAIT_SECONDS = 120.0  # a call that cannot get a slot for this long fails as Unavailable
BUCKET_SECONDS = 600
DAY_SECONDS = 86400

# -- the meter ------------------------------------------------------------------------------
def bump(conn, kind: str, n: int = 1, now: float | None = None) -> bool:
    """Add n to the current bucket inside the caller's transaction; False when the bucket is new (use add_count)."""
    bucket = int((now or time.time()) // BUCKET_SECONDS)
    return bool(conn.execute(
        meter_table.update().where(meter_table.c.kind == kind, meter_table.c.bucket == bucket)
        .values(count=meter_table.c.count + n)
    ).rowcount)


def count_in(conn, kind: str, n: int = 1) -> None:
    """Add n to the current bucket inside the caller's transaction, making the bucket if it is new."""
    if bump(conn, kind, n):
        return
    bucket = int(time.time() // BUCKET_SECONDS)
    try:
        with conn.begin_nested():
            conn.execute(meter_table.insert().values(kind=kind, bucket=bucket, count=n))
    except sa.exc.IntegrityError:
        bump(conn, kind, n)  # another process made the bucket first
        return
    conn.execute(meter_table.delete().where(meter_table.c.bucket < bucket - 2 * DAY_SECONDS // BUCKET_SECONDS))


def add_count(store, kind: str, n: int = 1, now: float | None = None) -> None:
    """Add n to the current bucket of `kind` (one UPDATE, an INSERT the first time in a bucket)."""
    if n <= 0:
        return
    bucket = int((now or time.time()) // BUCKET_SECONDS)
    where = (meter_table.c.kind == kind, meter_table.c.bucket == bucket)

    def once():
        with store.begin() as conn:
            if conn.execute(meter_table.update().where(*where).values(count=meter_table.c.count + n)).rowcount:
                return
        with store.begin() as conn:
            conn.execute(meter_table.insert().values(kind=kind, bucket=bucket, count=n))
            # A new bucket: drop the ones no figure looks at any more.
            conn.execute(meter_table.delete().where(meter_table.c.bucket < bucket - 2 * DAY_SECONDS // BUCKET_SECONDS))

    # Another process made the bucket first: add to it.
    rerun(once, attempts=3, when=lambda exc: isinstance(exc, sa.exc.IntegrityError))


def count_last_day(store, kind: str, now: float | None = None) -> int:
    """How many of `kind` in the rolling last 24 hours (to the bucket)."""
    first = int(((now or time.time()) - DAY_SECONDS) // BUCKET_SECONDS) + 1
    with store.engine.connect() as conn:
        total = conn.execute(
            sa.select(sa.func.coalesce(sa.func.sum(meter_table.c.count), 0)).where(
                meter_table.c.kind == kind, meter_table.c.bucket >= first
            )
        ).scalar()
    return int(total or 0)


def hourly(store, kinds, hours: int = 24, now: float | None = None) -> dict[str, list[int]]:
    """Each kind's count per clock hour over the last `hours` hours, oldest first (the current hour last)."""
    first_hour = int((now or time.time()) // 3600) - hours + 1
    with store.engine.connect() as conn:
        rows = conn.execute(
            sa.select(meter_table.c.kind, meter_table.c.bucket, meter_table.c.count).where(
                meter_table.c.kind.in_(list(kinds)), meter_table.c.bucket >= first_hour * 3600 // BUCKET_SECONDS)
        ).all()
    counts = {kind: [0] * hours for kind in kinds}
    for kind, bucket, count in rows:
        index = int(bucket) * BUCKET_SECONDS // 3600 - first_hour
        if 0 <= index < hours:
            counts[kind][index] += int(count)
    return counts


def budget_frees_at(store, budget: int, now: float | None = None) -> float:
    """When enough counted calls will have left the 24-hour window for one more call."""
    now = now or time.time()
    first = int((now - DAY_SECONDS) // BUCKET_SECONDS) + 1
    with store.engine.connect() as conn:
        rows = conn.execute(
            sa.select(meter_table.c.bucket, meter_table.c.count)
            .where(meter_table.c.kind == "calls", meter_table.c.bucket >= first)
            .order_by(meter_table.c.bucket)
        ).all()
    total = sum(int(r.count) for r in rows)
    if total < budget:
        return now
    for bucket, count in rows:
        total -= int(count)
        if total < budget:
            return max(now, (bucket + 1) * BUCKET_SECONDS + DAY_SECONDS)
    return now + BUCKET_SECONDS


# -- the gate -------------------------------------------------------------------------------
class Gate:
    """Deployment-wide concurrency permits and the daily budget, for one state store."""

    def __init__(self, store, concurrency: int, budget: int | None):
        self.store = store
        self.concurrency = max(1, int(concurrency or 1))
        self.budget = budget if budget and budget > 0 else None
        # The call is counted in the transaction that takes its permit: one commit.
        self.limiter = Limiter(store, "zoho", self.concurrency, cooldown=0.0, hold=SLOT_LEASE_SECONDS,
                               on_take=lambda conn, n: count_in(conn, "calls", n))

    @contextlib.contextmanager
    def call(self):
        """Hold one of the deployment's call permits for one Zoho API call; `yield`s it (`permit.answered()`
        once Zoho's answer is in). BudgetExhausted (nothing sent) when the budget is spent, Unavailable
        when no permit frees up within SLOT_WAIT_SECONDS."""
        # Budget first, outside the permit: a permit is held only for the call itself.
        if self.budget is not None and count_last_day(self.store, "calls") >= self.budget:
            raise BudgetExhausted(
                f"the daily Zoho call budget of {self.budget} calls (GATEWAY_DAILY_CALL_BUDGET) is spent "
                "for the last 24 hours; the queue waits until calls age out of that window"
            )
        try:
            # SLOT_LEASE_SECONDS is read per call (tests shorten it).
            with self.limiter.call(wait=SLOT_WAIT_SECONDS, hold=SLOT_LEASE_SECONDS) as permit:
                yield permit
        except NoPermit:
            raise Unavailable(f"all {self.concurrency} Zoho call slots (GATEWAY_ZOHO_CONCURRENCY) stayed busy for "
                              f"{SLOT_WAIT_SECONDS:.0f} s") from None

    def in_use(self) -> int:
        """Permits held by calls running right now across the deployment (for status pages and tests)."""
        return self.limiter.usage()["in_use"]


def for_runtime(rt) -> Gate:
    """The runtime's gate (made once per runtime)."""
    return rt.zoho_gate
