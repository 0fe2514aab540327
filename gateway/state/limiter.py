"""Deployment-wide limits on calls to a remote API: pools of permits in the state store (`gw_permits`).

A call holds a permit; a killed or timed-out call's permit frees itself only when the call could
have ended at the remote side (docs/ops-api.md, "One limiter for both APIs")."""
from __future__ import annotations

import contextlib
import random
import threading
import time
import uuid

import sqlalchemy as sa

from .tables import permits_table

BLOCK_SLOT = -1  # the pool's "blocked until" row (a 429's Retry-After), not a permit
FAST_POLL = (0.003, 0.008)  # seconds between looks while a held permit may be handed back any moment
SLOW_POLL_MAX = 0.5


class NoPermit(Exception):
    """No permit came free within the wait; `retry_after` says when one will (None: unknown)."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class Permit:
    """One taken permit; `answered()` once the remote side has answered the call it carries."""

    def __init__(self, limiter: Limiter, slot: int, holder: str):
        self.limiter = limiter
        self.slot = slot
        self.holder = holder
        self.used = False
        self.done = False

    def answered(self) -> None:
        self.used = self.done = True

    def sent(self) -> None:
        """A call went out with this permit; its outcome is not known yet."""
        self.used = True

    def free_at_release(self, now: float) -> float | None:
        """When the permit may be taken again: None keeps the time set when it was taken."""
        if not self.used:
            return now                        # nothing was sent
        if self.done:
            return now + self.limiter.cooldown  # the remote side has finished with it
        return None                           # it may still be running there: wait as if killed


class Limiter:
    """`permits` calls at a time, each permit resting `cooldown` seconds after its call ended.

    Concurrency cap: cooldown 0. Rate limit "N per W seconds": N permits, cooldown W (each
    remote window then sees at most N calls). `hold`: the longest a call may still run at the
    remote side; a holder that dies frees its permit only after that (and the cooldown).
    """

    def __init__(self, store, name: str, permits: int, *, cooldown: float = 0.0, hold: float = 45.0, on_take=None):
        self.store = store
        self.name = name
        self.permits = max(1, int(permits))
        self.cooldown = float(cooldown)
        self.hold = float(hold)
        self.on_take = on_take  # on_take(conn, n): in the transaction that takes n permits
        self._local = threading.BoundedSemaphore(self.permits)
        self._poller = threading.Lock()
        self._rows_ready = False

    # -- taking and giving back --------------------------------------------------------------
    @contextlib.contextmanager
    def call(self, wait: float, hold: float | None = None):
        """Hold one permit for one call. Leaving the block normally (or `permit.answered()`) means the
        remote side is done with it; an error before `answered()` leaves it resting as if killed."""
        if not self._local.acquire(timeout=max(0.0, wait)):
            raise NoPermit(f"no {self.name} permit free in this process for {wait:.0f} s")
        try:
            permit = self.take(1, wait, hold)[0]
            permit.sent()
            try:
                yield permit
                permit.answered()  # the call ended normally; an error leaves its outcome unknown
            finally:
                self.give_back([permit])
        finally:
            self._local.release()

    def take(self, n: int, wait: float, hold: float | None = None) -> list[Permit]:
        """Take `n` permits (all, or NoPermit after waiting `wait` seconds, none kept)."""
        self._ensure_rows()
        holder = uuid.uuid4().hex
        deadline = time.monotonic() + max(0.0, wait)
        got: list[Permit] = []
        if not self._poller.acquire(timeout=max(0.0, wait)):
            raise NoPermit(f"no {self.name} permit free for {wait:.0f} s")
        try:
            blocked, looked = self.blocked_for(), time.monotonic()
            while True:
                if blocked <= 0:
                    got += self._try_take(n - len(got), holder, self.hold if hold is None else hold)
                    if len(got) == n:
                        return got
                pause = blocked if blocked > 0 else self._pause()
                if time.monotonic() + min(pause, FAST_POLL[0]) > deadline:
                    self.give_back(got)
                    raise NoPermit(f"all {self.permits} {self.name} permits stayed busy for {wait:.0f} s"
                                   if blocked <= 0 else f"{self.name} calls are paused for {blocked:.0f} s more",
                                   retry_after=max(pause, 0.0))
                time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
                if blocked > 0 or time.monotonic() - looked > SLOW_POLL_MAX:
                    blocked, looked = self.blocked_for(), time.monotonic()
        finally:
            self._poller.release()

    def give_back(self, permits: list[Permit]) -> None:
        """Hand permits back: free now if unused, after the cooldown if answered, else as taken."""
        now = time.time()
        t = permits_table.c
        groups: dict[tuple, list[int]] = {}
        for permit in permits:
            groups.setdefault((permit.holder, permit.free_at_release(now)), []).append(permit.slot)
        for (holder, free_at), slots in groups.items():
            values = {"holder": None} if free_at is None else {"holder": None, "free_at": free_at}
            self.store.run(permits_table.update().where(t.limiter == self.name, t.slot.in_(slots), t.holder == holder)
                           .values(**values))

    def block(self, seconds: float) -> None:
        """Nobody takes a permit for `seconds` (the remote side said 429 Retry-After); never shortens a block."""
        self._ensure_rows()
        until = time.time() + max(0.0, seconds)
        t = permits_table.c
        self.store.run(permits_table.update().where(t.limiter == self.name, t.slot == BLOCK_SLOT, t.free_at < until)
                       .values(free_at=until))

    # -- figures -------------------------------------------------------------------------------
    def blocked_for(self) -> float:
        """Seconds until a 429's block ends (0 when none)."""
        with self.store.engine.connect() as conn:
            until = conn.execute(sa.select(permits_table.c.free_at).where(
                permits_table.c.limiter == self.name, permits_table.c.slot == BLOCK_SLOT)).scalar()
        return max(0.0, (until or 0.0) - time.time())

    def usage(self) -> dict:
        """{"permits", "in_use" (calls running), "resting" (waiting out their cooldown or a dead holder), "blocked_for"}."""
        now = time.time()
        t = permits_table.c
        with self.store.engine.connect() as conn:
            rows = conn.execute(sa.select(t.holder, t.free_at).where(
                t.limiter == self.name, t.slot >= 0, t.slot < self.permits)).all()
        in_use = sum(1 for r in rows if r.holder is not None and r.free_at > now)
        resting = sum(1 for r in rows if r.holder is None and r.free_at > now)
        return {"permits": self.permits, "in_use": in_use, "resting": resting, "blocked_for": self.blocked_for()}

    # -- internals -----------------------------------------------------------------------------
    def _ensure_rows(self) -> None:
        if self._rows_ready:
            return
        t = permits_table.c
        with self.store.engine.connect() as conn:
            present = set(conn.execute(sa.select(t.slot).where(t.limiter == self.name)).scalars())
        missing = [n for n in (BLOCK_SLOT, *range(self.permits)) if n not in present]
        if missing:
            try:
                with self.store.begin() as conn:
                    conn.execute(permits_table.insert(), [{"limiter": self.name, "slot": n, "holder": None, "free_at": 0.0}
                                                          for n in missing])
            except sa.exc.IntegrityError:
                self._rows_ready = False  # another process made some: look again
                return self._ensure_rows()
        self._rows_ready = True

    def _pool(self, now: float):
        t = permits_table.c
        return sa.and_(t.limiter == self.name, t.slot >= 0, t.slot < self.permits, t.free_at <= now)

    def _try_take(self, n: int, holder: str, hold: float) -> list[Permit]:
        """Take up to n free permits in one transaction (with the `on_take` count)."""
        t = permits_table.c
        dialect = self.store.dialect

        def take(conn):
            pick = sa.select(t.slot).where(self._pool(time.time())).order_by(t.free_at).limit(n)
            if dialect != "sqlite":  # SQLite's BEGIN IMMEDIATE already holds the one write lock
                pick = pick.with_for_update(skip_locked=True)
            slots = [int(s) for s in conn.execute(pick).scalars()]
            if slots:
                # Stamped when taken (after any wait for the rows), so the hold is never shorter than meant.
                conn.execute(permits_table.update().where(t.limiter == self.name, t.slot.in_(slots))
                             .values(holder=holder, free_at=time.time() + hold + self.cooldown))
                if self.on_take is not None:
                    self.on_take(conn, len(slots))
            return slots

        # Processes race for the same rows: a deadlock rolls back and the race is run again.
        return [Permit(self, int(slot), holder) for slot in self.store.transaction(take)]

    def _pause(self) -> float:
        """How long to wait before looking again: soon while a permit may be handed back, else
        until the first resting permit frees itself."""
        if self.cooldown == 0:
            return random.uniform(*FAST_POLL)
        now = time.time()
        t = permits_table.c
        with self.store.engine.connect() as conn:
            first = conn.execute(sa.select(sa.func.min(t.free_at)).where(
                t.limiter == self.name, t.slot >= 0, t.slot < self.permits)).scalar()
        return min(SLOW_POLL_MAX, max(FAST_POLL[0], (first or now) - now))
