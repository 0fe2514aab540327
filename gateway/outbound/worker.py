"""The queue worker: 2 × GATEWAY_ZOHO_CONCURRENCY sender threads claim and push batches; the calling
thread renews leases, reclaims dead processes' jobs, and hands its leases back on stop
(docs/outbound.md, "The queue")."""
from __future__ import annotations

import logging
import random
import threading

import sqlalchemy as sa

from ..state import new_holder_id
from ..sync.modules import NAMES as MODULES
from ..zoho import connection
from . import pause as pauses
from . import push, queue
from .batch import process_batch
from .retry import DEFAULT_POLICY, RetryPolicy

log = logging.getLogger("gateway.outbound.worker")

IDLE_SECONDS = 1.0          # how often an idle sender looks for due jobs
PAUSE_CHECK_SECONDS = 5.0   # how often a paused sender looks whether the pause is over


def run(rt, stop) -> None:
    Worker(rt).run(stop)


class Worker:
    def __init__(self, rt, senders: int | None = None, policy: RetryPolicy = DEFAULT_POLICY):
        self.rt = rt
        self.holder = new_holder_id()
        # Twice the cap: while some senders are in a Zoho call, others read and settle their
        # batches, so a freed slot finds a batch ready (the gate keeps the cap itself).
        self.senders = senders or 2 * max(1, int(rt.config.get("GATEWAY_ZOHO_CONCURRENCY") or 5))
        self.policy = policy
        self._busy = threading.Event()  # set while there is work: wakes the resting senders

    def run(self, stop: threading.Event) -> None:
        threads = [threading.Thread(target=self._sender, args=(stop, n), name=f"gw-push-{n}", daemon=True)
                   for n in range(self.senders)]
        for thread in threads:
            thread.start()
        log.info("queue worker %s started with %d senders", self.holder, self.senders)
        try:
            while not stop.wait(queue.LEASE_SECONDS / 3):
                try:
                    queue.renew(self.rt.store, self.holder)
                    reclaimed = queue.reclaim_lapsed(self.rt.store)
                    if reclaimed:
                        log.warning("reclaimed %d jobs whose worker stopped answering", reclaimed)
                except sa.exc.SQLAlchemyError as exc:
                    log.warning("queue heartbeat failed: %s", exc.__class__.__name__)
        finally:
            self._busy.set()  # resting senders wake up and see the stop
            for thread in threads:
                thread.join(timeout=8)  # within BackgroundRunner.stop's wait; a call still running is re-sent elsewhere
            handed = queue.release(self.rt.store, self.holder)
            log.info("queue worker %s stopped; handed back %d jobs", self.holder, handed)

    def _sender(self, stop: threading.Event, index: int) -> None:
        # Idle, only sender 0 polls and wakes the others: a few queries a second per process, not per sender.
        while not stop.is_set():
            try:
                if paused_now(self.rt):
                    stop.wait(PAUSE_CHECK_SECONDS * random.uniform(0.8, 1.2))
                    continue
                if self.step():
                    self._busy.set()
                elif index == 0:
                    stop.wait(IDLE_SECONDS * random.uniform(0.8, 1.2))
                else:
                    self._busy.clear()
                    if not stop.is_set():  # run() sets stop, then _busy: a clear after that must not wait
                        self._busy.wait(IDLE_SECONDS * 10)
            except Exception:  # keep sending; one bad batch must not stop the worker
                log.exception("queue sender failed; continuing in 5 s")
                stop.wait(5)

    def step(self) -> bool:
        """Claim and process one batch (Contacts before Deals); False when nothing was due."""
        for module in MODULES:
            jobs = queue.claim(self.rt.store, self.holder, module, limit=push.BATCH_SIZE)
            if jobs:
                try:
                    process_batch(self.rt, self.holder, module, jobs, self.policy)
                except BaseException:
                    queue.release(self.rt.store, self.holder, [j.id for j in jobs])
                    raise
                return True
        return False


def drain(rt, max_batches: int = 1000, policy: RetryPolicy = DEFAULT_POLICY) -> int:
    """Process due batches in this thread until none is due or the queue pauses (tests, commands)."""
    worker = Worker(rt, senders=1, policy=policy)
    batches = 0
    while batches < max_batches and not paused_now(rt) and worker.step():
        batches += 1
    return batches


# -- pause ------------------------------------------------------------------------------------------
def paused_now(rt) -> bool:
    """Is the queue paused? Ends a re-authorization pause once the admin has connected again."""
    pause = pauses.current_pause(rt.store)
    if pause is None:
        return False
    if pause.get("kind") in pauses.UNTIL_CONNECTED:
        if connection.state(rt) == connection.CONNECTED and connection.account_id(rt):
            if pauses.resume(rt.store, kinds=pauses.UNTIL_CONNECTED):
                log.info("Zoho is connected again: the queue resumes")
            # Only that pause ends: one another sender set meanwhile (its own 429, say) stays.
            return pauses.current_pause(rt.store) is not None
    return True
