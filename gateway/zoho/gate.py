"""The deployment-wide limits on Zoho API calls, kept in the state store: concurrency slot leases
and the daily call budget (a meter that also counts records pushed, failed and given up). The client
wraps every call in `with gate.for_runtime(rt).call():` (docs/outbound.md, "The queue")."""
from __future__ import annotations

import contextlib
import itertools
import os
import random
import threading
import time

import sqlalchemy as sa

from ..state.engine import rerun
from ..state.tables import leases_table, meter_table
from .errors import BudgetExhausted, Unavailable

SLOT_LEASE_SECONDS = 45.0  # > the client's 30 s timeout: a live call never loses its slot
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
    """Deployment-wide concurrency slots and the daily budget, for one state store."""

    def __init__(self, store, concurrency: int, budget: int | None):
        self.store = store
        self.concurrency = max(1, int(concurrency or 1))
        self.budget = budget if budget and budget > 0 else None
        self.slots = [f"zoho-slot-{n}" for n in range(self.concurrency)]
        self._local = threading.BoundedSemaphore(self.concurrency)
        self._poller = threading.Lock()
        self._rows_ready = False
        self._seq = itertools.count()
        self._pid = os.getpid()

    @contextlib.contextmanager
    def call(self):
        """Hold one of the deployment's call slots for one Zoho API call; BudgetExhausted (nothing
        sent) when the budget is spent, Unavailable when no slot frees up within SLOT_WAIT_SECONDS."""
        # Budget and count first, outside the slot: a slot is held only for the call itself.
        if self.budget is not None and count_last_day(self.store, "calls") >= self.budget:
            raise BudgetExhausted(
                f"the daily Zoho call budget of {self.budget} calls (GATEWAY_DAILY_CALL_BUDGET) is spent "
                "for the last 24 hours; the queue waits until calls age out of that window"
            )
        if not self._local.acquire(timeout=SLOT_WAIT_SECONDS):
            raise Unavailable(f"no Zoho call slot free in this process for {SLOT_WAIT_SECONDS:.0f} s")
        try:
            slot, holder = self._take_slot(Unavailable)
            try:
                yield
            finally:
                self._give_back(slot, holder)
        finally:
            self._local.release()

    def in_use(self) -> int:
        """Slots held right now across the deployment (for status pages and tests)."""
        now = time.time()
        with self.store.engine.connect() as conn:
            return int(conn.execute(
                sa.select(sa.func.count()).select_from(leases_table).where(
                    leases_table.c.name.in_(self.slots), leases_table.c.holder.is_not(None), leases_table.c.expires_at >= now
                )
            ).scalar())

    # -- slots ------------------------------------------------------------------------------
    def _ensure_rows(self) -> None:
        with self.store.engine.connect() as conn:
            present = set(conn.execute(sa.select(leases_table.c.name).where(leases_table.c.name.in_(self.slots))).scalars())
        for name in self.slots:
            if name in present:
                continue
            try:
                with self.store.begin() as conn:
                    conn.execute(leases_table.insert().values(name=name, holder=None, expires_at=0.0))
            except sa.exc.IntegrityError:
                pass  # another process made it
        self._rows_ready = True

    def _take_slot(self, unavailable):
        if not self._rows_ready:
            self._ensure_rows()
        holder = f"{self._pid}-{threading.get_ident()}-{next(self._seq)}"
        deadline = time.monotonic() + SLOT_WAIT_SECONDS
        # One thread per process asks the store at a time; the others wait here without queries.
        if not self._poller.acquire(timeout=SLOT_WAIT_SECONDS):
            raise unavailable(f"no Zoho call slot free in this process for {SLOT_WAIT_SECONDS:.0f} s")
        try:
            while True:
                name = self._try_any_slot(holder)
                if name is not None:
                    return name, holder
                if time.monotonic() > deadline:
                    raise unavailable(
                        f"all {self.concurrency} Zoho call slots (GATEWAY_ZOHO_CONCURRENCY) stayed busy for {SLOT_WAIT_SECONDS:.0f} s"
                    )
                time.sleep(random.uniform(0.003, 0.008))
        finally:
            self._poller.release()

    def _try_any_slot(self, holder: str) -> str | None:
        """Take any free or lapsed slot with one statement (and count the call in the same commit)."""
        now = time.time()
        t = leases_table.c
        free = sa.and_(t.name.in_(self.slots), sa.or_(t.holder.is_(None), t.expires_at < now))
        values = {"holder": holder, "expires_at": now + SLOT_LEASE_SECONDS}

        def take(conn):
            if self.store.dialect == "mysql":
                taken = conn.execute(leases_table.update().where(free).values(**values).with_dialect_options(mysql_limit=1)).rowcount
                name = conn.execute(sa.select(t.name).where(t.name.in_(self.slots), t.holder == holder)).scalar() if taken else None
            else:
                pick = sa.select(t.name).where(free).limit(1)
                if self.store.dialect == "postgresql":
                    pick = pick.with_for_update(skip_locked=True)
                name = conn.execute(
                    leases_table.update().where(t.name == pick.scalar_subquery(), free).values(**values).returning(t.name)
                ).scalar()
            counted = name is not None and bump(conn, "calls")  # the call is counted with its slot: one commit
            return name, counted

        # Processes race for the same slot rows: a deadlock rolls back and the race is run again.
        name, counted = self.store.transaction(take)
        if name is not None and not counted:
            add_count(self.store, "calls")
        return name

    def _give_back(self, name: str, holder: str) -> None:
        self.store.run(
            leases_table.update()
            .where(leases_table.c.name == name, leases_table.c.holder == holder)
            .values(holder=None, expires_at=0.0)
        )


def for_runtime(rt) -> Gate:
    """The runtime's gate (made once per runtime)."""
    return rt.zoho_gate
