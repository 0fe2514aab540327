"""The queue worker: claims batches of jobs, pushes them to Zoho, and settles each job.

`run(rt, stop)` (a background task, gateway.background) starts 2 × GATEWAY_ZOHO_CONCURRENCY
sender threads in this process; the deployment-wide gate (gateway.zoho.gate) keeps the calls in flight
across all processes at that number, so extra senders only wait. The calling thread renews
this process's job leases, reclaims the jobs of dead processes, and on stop hands every lease
it still holds back to the queue.

What happens to a batch (`process_batch`):
- SUCCESS per record → link saved with the hash of what was sent, job done;
  INVALID_DATA / MANDATORY_NOT_FOUND / DUPLICATE_DATA → that job dead with Zoho's message and
  field (the rest of a 207 still succeeds); other per-record errors → a counted attempt.
- Timeouts, network errors, 5xx → a counted attempt, retried per RetryPolicy (full jitter,
  about a day in all), then dead.
- 429 → no attempt counted; the whole queue pauses until Retry-After, or for a growing backoff
  (the 429s of senders in flight together make one pause; a pause in force is only ever
  lengthened, and one that waits for the admin is never turned into one that ends by itself).
- 401 INVALID_TOKEN → the client refreshes once and retries; nothing counted here. A token
  refreshed moments ago is not refreshed again (gateway.zoho.tokens): the queue pauses as below.
- Revoked refresh token / not connected → the queue pauses (no attempt burnt) until the admin
  connects again; a 401 that a fresh token does not cure (e.g. a missing scope) pauses it for
  five minutes at a time. Daily budget spent → the queue pauses until calls age out of the 24 hours.
- A Deal whose customer has no Contact in Zoho yet waits (its customer is queued first); one
  whose customer is not in the OnPrintShop database at all is dead, saying so.
- A Deal Zoho refuses for its Contact_Name (the customer's Contact was deleted in Zoho): the
  customer's link is forgotten, the customer pushed again, then the Deal. Refused again with a
  Contact pushed moments ago, the Deal is dead with Zoho's message (no endless relinking).
"""
from __future__ import annotations

import logging
import random
import threading
import time

import sqlalchemy as sa

from .. import links
from ..store import new_holder_id
from ..zoho import errors as zerr
from . import push, queue

log = logging.getLogger("gateway.outbound.worker")

IDLE_SECONDS = 1.0          # how often an idle sender looks for due jobs
PAUSE_CHECK_SECONDS = 5.0   # how often a paused sender looks whether the pause is over
WAIT_FOR_CONTACT_SECONDS = 5.0
BLOCKED_RETRY_SECONDS = 300.0  # a Deal whose customer's Contact push is dead looks again this often
REFUSED_PAUSE_SECONDS = 300.0  # Zoho refused our authorization itself (scope): look again this often
# A Deal refused for a Contact pushed less than this ago is dead: relinking once more would not help.
CONTACT_RELINK_GUARD_SECONDS = 300.0
OPS_RETRY_SECONDS = 30.0    # the OnPrintShop database did not answer: try the batch again then
MODULE_SETTING = {"Contacts": "contacts", "Deals": "deals"}


def run(rt, stop) -> None:
    Worker(rt).run(stop)


class Worker:
    def __init__(self, rt, senders: int | None = None, policy: queue.RetryPolicy = queue.DEFAULT_POLICY):
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
        # While the queue is idle only sender 0 looks for due jobs (every IDLE_SECONDS); when it
        # finds some it wakes the others, and one that finds nothing sends them back to sleep.
        # An idle deployment costs a couple of queries a second per process, not one per sender.
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
                    self._busy.wait(IDLE_SECONDS * 10)
            except Exception:  # keep sending; one bad batch must not stop the worker
                log.exception("queue sender failed; continuing in 5 s")
                stop.wait(5)

    def step(self) -> bool:
        """Claim and process one batch (Contacts before Deals); False when nothing was due."""
        for module in queue.MODULES:
            jobs = queue.claim(self.rt.store, self.holder, module, limit=push.BATCH_SIZE)
            if jobs:
                try:
                    process_batch(self.rt, self.holder, module, jobs, self.policy)
                except BaseException:
                    queue.release(self.rt.store, self.holder, [j.id for j in jobs])
                    raise
                return True
        return False


def drain(rt, max_batches: int = 1000, policy: queue.RetryPolicy = queue.DEFAULT_POLICY) -> int:
    """Process due batches in this thread until none is due or the queue pauses (tests, commands)."""
    worker = Worker(rt, senders=1, policy=policy)
    batches = 0
    while batches < max_batches and not paused_now(rt) and worker.step():
        batches += 1
    return batches


# -- settling jobs ---------------------------------------------------------------------------------
def settle(store, work) -> None:
    """Run `work(conn)` in one state-store transaction, again from the start after a deadlock."""
    store.transaction(work)


# -- pause ------------------------------------------------------------------------------------------
def paused_now(rt) -> bool:
    """Is the queue paused? Ends a re-authorization pause once the admin has connected again."""
    pause = queue.current_pause(rt.store)
    if pause is None:
        return False
    if pause.get("kind") in queue.UNTIL_CONNECTED:
        from ..zoho import connection

        if connection.state(rt) == connection.CONNECTED and connection.account_id(rt):
            if queue.resume(rt.store, kinds=queue.UNTIL_CONNECTED):
                log.info("Zoho is connected again: the queue resumes")
            # Only that pause ends: one another sender set meanwhile (its own 429, say) stays.
            return queue.current_pause(rt.store) is not None
    return True


# Set when this process paused the queue for a 429, so a later success here ends the backoff
# streak without reading the pause setting after every batch.
_throttled_here = threading.Event()


def _pause_for(rt, exc: Exception) -> dict | None:
    """Pause the queue for this failure; returns the pause in force afterwards (perhaps an earlier,
    longer one: see queue.pause)."""
    from ..zoho import gate

    if isinstance(exc, zerr.Throttled):
        _throttled_here.set()
        return queue.pause_throttled(rt.store, exc.retry_after)
    if isinstance(exc, zerr.BudgetExhausted):
        budget = rt.config.get("GATEWAY_DAILY_CALL_BUDGET") or 0
        until = gate.budget_frees_at(rt.store, budget)
        return queue.pause(rt.store, "budget", f"the daily Zoho call budget ({budget} calls per 24 hours, "
                           "GATEWAY_DAILY_CALL_BUDGET) is spent; sending resumes as calls age out of the last 24 hours",
                           until=until)
    if isinstance(exc, zerr.ApiRefused):
        until = time.time() + REFUSED_PAUSE_SECONDS
        return queue.pause(rt.store, "refused", f"{exc}; sending tries again at {queue.clock_time(until)} UTC", until=until)
    if isinstance(exc, zerr.ReauthorizationNeeded):
        return queue.pause(rt.store, "reauthorization", f"Zoho needs re-authorization: {exc} "
                           "(save the Zoho settings on the admin page with a new grant token; the queue resumes then)")
    return queue.pause(rt.store, "not_configured", f"{exc}")


# -- one batch ----------------------------------------------------------------------------------------
def process_batch(rt, holder: str, module: str, jobs: list[queue.Job], policy: queue.RetryPolicy = queue.DEFAULT_POLICY) -> dict:
    """Push one claimed batch and settle every job; returns counts by outcome."""
    from ..zoho import connection, gate

    store = rt.store
    by_id = {job.ops_id: job for job in jobs}
    counts = {"sent": 0, "ok": 0, "dead": 0, "retry": 0, "unchanged": 0, "waiting": 0, "missing": 0}

    info = connection.load(store) or {}  # one read for account id and modules (this is per batch)
    synced = tuple(info.get("modules") or ())
    account = info.get("account_id")
    if not account:
        exc = zerr.NotConfigured()
        _pause_for(rt, exc)
        settle(store, lambda conn: queue.defer(conn, holder, [j.id for j in jobs], time.time()))
        return counts
    if synced and MODULE_SETTING[module] not in synced:
        settle(store, lambda conn: queue.complete(conn, holder, [j.id for j in jobs],
                                                  note=f"{module} are not synced (Zoho settings): not sent"))
        return counts

    forced = {job.ops_id for job in jobs if job.force}
    try:
        prepared = push.prepare(rt, module, list(by_id), account_id=account, force=forced,
                                contacts_synced=not synced or "contacts" in synced)
    except sa.exc.SQLAlchemyError as exc:
        message = f"the OnPrintShop database did not answer ({exc.__class__.__name__}); trying again in {OPS_RETRY_SECONDS:.0f} s"
        log.warning(message)
        queue.note_error(store, message)
        settle(store, lambda conn: queue.defer(conn, holder, [j.id for j in jobs], time.time() + OPS_RETRY_SECONDS,
                                               note=message))
        return counts

    blocked: dict[int, str] = {}
    if prepared.waiting:
        customers = set(prepared.waiting.values())
        # A customer whose Contact push is dead is not revived by its orders (that would resend a
        # record Zoho refused every few seconds): its Deals wait, saying why, until it is fixed.
        blocked = queue.dead_errors(rt, "Contacts", customers)
        if customers - set(blocked):
            queue.enqueue(rt, "Contacts", customers - set(blocked))
    if prepared.unchanged or prepared.missing or prepared.waiting or prepared.no_customer:
        def settle_unsent(conn):
            queue.complete(conn, holder, [by_id[i].id for i in prepared.unchanged])
            queue.complete(conn, holder, [by_id[i].id for i in prepared.missing],
                           note="no longer in the OnPrintShop database: not sent")
            queue.defer(conn, holder, [by_id[i].id for i, c in prepared.waiting.items() if c not in blocked],
                        time.time() + WAIT_FOR_CONTACT_SECONDS, note="waiting for its customer's Contact to be created in Zoho")
            for order_id, customer_id in prepared.waiting.items():
                if customer_id in blocked:
                    queue.defer(conn, holder, [by_id[order_id].id], time.time() + BLOCKED_RETRY_SECONDS,
                                note=f"waiting for customer {customer_id}, whose Contact push is dead: {blocked[customer_id]}")
            for order_id, customer_id in prepared.no_customer.items():
                queue.bury(conn, holder, [by_id[order_id].id], no_customer_error(order_id, customer_id))

        settle(store, settle_unsent)
        if prepared.no_customer:
            order_id, customer_id = next(iter(prepared.no_customer.items()))
            queue.note_error(store, f"Deals {order_id}: {no_customer_error(order_id, customer_id)}")
    counts.update(unchanged=len(prepared.unchanged), missing=len(prepared.missing), waiting=len(prepared.waiting),
                  dead=len(prepared.no_customer))
    if not prepared.send:
        return counts

    outgoing = prepared.send
    sent_jobs = [by_id[o.ops_id] for o in outgoing]
    sent_ids = [j.id for j in sent_jobs]
    counts["sent"] = len(outgoing)
    started = time.perf_counter()
    try:
        results = push.send(rt, module, outgoing)
    except (zerr.Throttled, zerr.BudgetExhausted, zerr.ReauthorizationNeeded, zerr.NotConfigured, zerr.ApiRefused) as exc:
        # Nothing wrong with these records: the whole queue waits, no attempt is counted.
        pause = _pause_for(rt, exc) or {}
        queue.note_error(store, str(exc))
        log.warning("push of %d %s paused the queue: %s", len(outgoing), module, exc)
        settle(store, lambda conn: queue.defer(conn, holder, sent_ids, pause.get("until") or time.time()))
        return counts
    except (zerr.ZohoError, push.BatchRefused) as exc:
        # Unavailable (timeouts, 5xx), a 4xx without per-record results: a counted attempt.
        queue.note_error(store, str(exc))
        dead = store.transaction(lambda conn: queue.fail(conn, holder, sent_jobs, str(exc), policy))
        counts["retry"] = len(sent_jobs) - len(dead)
        counts["dead"] += len(dead)
        log.warning("push of %d %s failed (%d dead): %s", len(outgoing), module, len(dead), exc)
        return counts

    ok_ids: list[int] = []
    relink_customers: set[int] = set()
    settled = {"dead": 0, "retry": 0}

    def record_results(conn):
        ok_ids.clear()
        relink_customers.clear()
        relink_ids = []
        linked = []
        settled.update(dead=0, retry=0)
        for sent, result in zip(outgoing, results):
            job = by_id[result.ops_id]
            if result.ok:
                linked.append((result.ops_id, result.zoho_id, sent.hash))
                ok_ids.append(job.id)
            elif result.code == "INVALID_DATA" and result.field == "id" and "id" in sent.record:
                # The linked Zoho record is gone (deleted in Zoho): forget the link, upsert afresh.
                links.forget(conn, module, result.ops_id)
                relink_ids.append(job.id)
            elif module == "Deals" and result.code == "INVALID_DATA" and result.field == "Contact_Name":
                verdict, why = _refused_contact(conn, sent)
                if verdict == "bury":
                    queue.bury(conn, holder, [job.id], f"{result.describe()}; {why}")
                    settled["dead"] += 1
                else:
                    if verdict == "relink":
                        # The customer's Contact is gone in Zoho: forget it, push the customer again,
                        # and the Deal waits for the new Contact (as for a first push).
                        links.forget(conn, "Contacts", sent.customer_id)
                        relink_customers.add(sent.customer_id)
                    relink_ids.append(job.id)
            elif result.refused:
                queue.bury(conn, holder, [job.id], result.describe())
                settled["dead"] += 1
            else:
                dead = queue.fail(conn, holder, [job], result.describe(), policy)
                settled["dead" if dead else "retry"] += 1
        links.save_many(conn, module, linked)
        queue.complete(conn, holder, ok_ids)
        queue.defer(conn, holder, relink_ids, time.time())
        counted[0] = not ok_ids or gate.bump(conn, "pushes", len(ok_ids))

    counted = [False]
    settle(store, record_results)
    counts["ok"] = len(ok_ids)
    counts["dead"] += settled["dead"]
    counts["retry"] += settled["retry"]
    if relink_customers:
        # Also found by the Deal's next round (its customer has no Contact now); queued here to be prompt.
        queue.enqueue(rt, "Contacts", relink_customers)
        log.warning("Zoho refused the Contact of %d Deals (deleted in Zoho?): customers %s are pushed again",
                    len(relink_customers), sorted(relink_customers))
    if not counted[0]:
        gate.add_count(store, "pushes", len(ok_ids))
    if settled["dead"] or settled["retry"]:
        first = next(r for r in results if not r.ok)
        queue.note_error(store, f"{module} {first.ops_id}: {first.describe()}")
    if _throttled_here.is_set() and queue.current_pause(store) is None:
        _throttled_here.clear()
        queue.end_throttle_streak(store)  # a call went through: the next 429 starts the backoff afresh
    log.info("pushed %d %s: %d ok, %d dead, %d to retry in %.0f ms", len(outgoing), module, counts["ok"], counts["dead"],
             counts["retry"], (time.perf_counter() - started) * 1000)
    return counts


def no_customer_error(order_id: int, customer_id: int) -> str:
    return (f"customer {customer_id} of order {order_id} is not in the OnPrintShop database, so its Deal has no Contact "
            "to link to; once the order has an existing customer, a change to the order (or retry-dead) sends it")


def _refused_contact(conn, sent: push.Outgoing) -> tuple[str, str]:
    """Zoho refused a Deal's Contact_Name: what to do, and why when giving up.

    'relink': the customer's link is the Contact sent and was made a while ago (the Contact was
    probably deleted in Zoho since); 'resend': the link changed meanwhile (another batch relinked
    it), so the Deal goes again as things are now; 'bury': the Contact was pushed moments ago and
    Zoho still refuses it, so relinking again would only loop.
    """
    if sent.customer_id is None:
        return "bury", "the Deal's customer is unknown"
    t = links.links_table.c
    row = conn.execute(
        sa.select(t.zoho_id, t.updated_at).where(t.module == "Contacts", t.ops_id == sent.customer_id)
    ).first()
    contact = (sent.record.get("Contact_Name") or {}).get("id")
    if row is None or row.zoho_id != contact:
        return "resend", ""
    age = max(0.0, time.time() - float(row.updated_at))
    if age < CONTACT_RELINK_GUARD_SECONDS:
        return "bury", (f"customer {sent.customer_id}'s Contact {contact} was pushed to Zoho {age:.0f} s ago "
                        "and Zoho still refuses it for this Deal")
    return "relink", ""
