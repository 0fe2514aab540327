"""One claimed batch: push it to Zoho and settle every job by its record's own outcome
(docs/outbound.md, "What happens to a batch")."""
from __future__ import annotations

import logging
import threading
import time

import sqlalchemy as sa

from ..ops import OpsError
from ..sync import links
from ..sync.modules import BY_ZOHO
from ..zoho import connection, gate
from ..zoho import errors as zerr
from . import pause as pauses
from . import push, queue
from .retry import DEFAULT_POLICY, RetryPolicy

log = logging.getLogger("gateway.outbound.worker")

WAIT_FOR_CONTACT_SECONDS = 5.0
BLOCKED_RETRY_SECONDS = 300.0  # a Deal whose customer's Contact push is dead looks again this often
# A Deal refused for a Contact pushed less than this ago is dead: relinking once more would not help.
CONTACT_RELINK_GUARD_SECONDS = 300.0
OPS_RETRY_SECONDS = 30.0    # OnPrintShop did not answer: try the batch again then
REFUSED_PAUSE_SECONDS = 300.0  # Zoho refused our authorization itself (scope): look again this often
PAUSING = (zerr.Throttled, zerr.BudgetExhausted, zerr.ReauthorizationNeeded, zerr.NotConfigured, zerr.ApiRefused)

# Set when this process paused the queue for a 429, so a later success here ends the backoff
# streak without reading the pause setting after every batch.
throttled_here = threading.Event()


def pause_for(rt, exc: Exception) -> dict | None:
    """Pause the queue for this failure; returns the pause in force afterwards (perhaps an earlier,
    longer one: see pause.pause)."""
    if isinstance(exc, zerr.Throttled):
        throttled_here.set()
        return pauses.pause_throttled(rt.store, exc.retry_after)
    if isinstance(exc, zerr.BudgetExhausted):
        budget = rt.config.get("GATEWAY_DAILY_CALL_BUDGET") or 0
        until = gate.budget_frees_at(rt.store, budget)
        return pauses.pause(rt.store, "budget", f"the daily Zoho call budget ({budget} calls per 24 hours, "
                           "GATEWAY_DAILY_CALL_BUDGET) is spent; sending resumes as calls age out of the last 24 hours",
                           until=until)
    if isinstance(exc, zerr.ApiRefused):
        until = time.time() + REFUSED_PAUSE_SECONDS
        return pauses.pause(rt.store, "refused", f"{exc}; sending tries again at {pauses.clock_time(until)} UTC", until=until)
    if isinstance(exc, zerr.ReauthorizationNeeded):
        return pauses.pause(rt.store, "reauthorization", f"Zoho needs re-authorization: {exc} "
                           "(save the Zoho settings on the admin page with a new grant token; the queue resumes then)")
    return pauses.pause(rt.store, "not_configured", f"{exc}")


def process_batch(rt, holder: str, module: str, jobs: list[queue.Job], policy: RetryPolicy = DEFAULT_POLICY) -> dict:
    """Push one claimed batch and settle every job; returns counts by outcome (failures also go to the meter)."""
    counts = _push_and_settle(rt, holder, module, jobs, policy)
    gate.add_count(rt.store, "push_failed", counts["retry"])
    gate.add_count(rt.store, "push_dead", counts["dead"])
    return counts


def _push_and_settle(rt, holder: str, module: str, jobs: list[queue.Job], policy: RetryPolicy) -> dict:
    store = rt.store
    by_id = {job.ops_id: job for job in jobs}
    counts = {"sent": 0, "ok": 0, "dead": 0, "retry": 0, "unchanged": 0, "waiting": 0, "missing": 0}

    info = connection.load(store) or {}  # one read for account id and modules (this is per batch)
    synced = tuple(info.get("modules") or ())
    account = info.get("account_id")
    if not account:
        exc = zerr.NotConfigured()
        pause_for(rt, exc)
        store.transaction(lambda conn: queue.defer(conn, holder, [j.id for j in jobs], time.time()))
        return counts
    if synced and BY_ZOHO[module].setting not in synced:
        store.transaction(lambda conn: queue.complete(conn, holder, [j.id for j in jobs],
                                                  note=f"{module} are not synced (Zoho settings): not sent"))
        return counts

    forced = {job.ops_id for job in jobs if job.force}
    try:
        prepared = push.prepare(rt, module, list(by_id), account_id=account, force=forced,
                                contacts_synced=not synced or "contacts" in synced)
    except OpsError as exc:
        message = f"{exc}; trying again in {OPS_RETRY_SECONDS:.0f} s"
        log.warning(message)
        queue.note_error(store, message)
        store.transaction(lambda conn: queue.defer(conn, holder, [j.id for j in jobs], time.time() + OPS_RETRY_SECONDS,
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
                           note=f"no longer in {rt.ops.describe()}: not sent")
            queue.defer(conn, holder, [by_id[i].id for i, c in prepared.waiting.items() if c not in blocked],
                        time.time() + WAIT_FOR_CONTACT_SECONDS, note="waiting for its customer's Contact to be created in Zoho")
            for order_id, customer_id in prepared.waiting.items():
                if customer_id in blocked:
                    queue.defer(conn, holder, [by_id[order_id].id], time.time() + BLOCKED_RETRY_SECONDS,
                                note=f"waiting for customer {customer_id}, whose Contact push is dead: {blocked[customer_id]}")
            for order_id, customer_id in prepared.no_customer.items():
                queue.bury(conn, holder, [by_id[order_id].id], no_customer_error(order_id, customer_id))

        store.transaction(settle_unsent)
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
    except PAUSING as exc:
        # Nothing wrong with these records: the whole queue waits, no attempt is counted.
        pause = pause_for(rt, exc) or {}
        queue.note_error(store, str(exc))
        log.warning("push of %d %s paused the queue: %s", len(outgoing), module, exc)
        store.transaction(lambda conn: queue.defer(conn, holder, sent_ids, pause.get("until") or time.time()))
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
        for sent, result in zip(outgoing, results, strict=True):
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
    store.transaction(record_results)
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
    if throttled_here.is_set() and pauses.current_pause(store) is None:
        throttled_here.clear()
        pauses.end_throttle_streak(store)  # a call went through: the next 429 starts the backoff afresh
    log.info("pushed %d %s: %d ok, %d dead, %d to retry in %.0f ms", len(outgoing), module, counts["ok"], counts["dead"],
             counts["retry"], (time.perf_counter() - started) * 1000)
    return counts


def no_customer_error(order_id: int, customer_id: int) -> str:
    return (f"customer {customer_id} of order {order_id} is not in the OnPrintShop database, so its Deal has no Contact "
            "to link to; once the order has an existing customer, a change to the order (or retry-dead) sends it")


def _refused_contact(conn, sent: push.Outgoing) -> tuple[str, str]:
    """Zoho refused a Deal's Contact_Name: 'relink' (an old link: the Contact was probably deleted),
    'resend' (the link changed meanwhile) or 'bury' (pushed moments ago, still refused: relinking
    would loop), with why when burying (docs/outbound.md, "What happens to a batch")."""
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
