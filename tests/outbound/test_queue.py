"""The queue's own rules on every state store: one job per record, leases, reclaim, purge."""
from __future__ import annotations

import threading
import time

import pytest

from gateway.outbound import queue
from gateway.state import Store, new_holder_id
from gateway.state.migrate import init_db
from tests.conftest import LockWaiters, wait_until


class Rt:
    def __init__(self, store):
        self.store = store


@pytest.fixture
def rt(state_db_url):
    store = Store(state_db_url)
    init_db(store)
    yield Rt(store)
    store.dispose()


def test_one_job_per_record_changes_merge_in_flight_requeues_dead_revives(rt):
    queue.enqueue(rt, "Contacts", [1, 2, 2, 3])
    queue.enqueue(rt, "Contacts", [2, 3])
    assert queue.status(rt)["pending"] == 3
    holder = new_holder_id()
    jobs = queue.claim(rt.store, holder, "Contacts", limit=2)
    assert [j.ops_id for j in jobs] == [1, 2] and queue.status(rt)["in_flight"] == 2
    queue.enqueue(rt, "Contacts", [1])  # a change while job 1 is being sent
    assert queue.status(rt)["pending"] == 1
    with rt.store.begin() as conn:
        queue.complete(conn, holder, [j.id for j in jobs])
        # job 1 goes back to pending (its newer state must go out), job 2 is done
    status = queue.status(rt)
    assert (status["pending"], status["done"], status["in_flight"]) == (2, 1, 0)

    other = new_holder_id()
    (job3, job1) = sorted(queue.claim(rt.store, other, "Contacts"), key=lambda j: -j.ops_id)
    with rt.store.begin() as conn:
        queue.bury(conn, other, [job3.id], "Zoho INVALID_DATA: invalid data (field Email)")
        queue.complete(conn, other, [job1.id])
    assert queue.dead_jobs(rt)[0]["ops_id"] == 3 and queue.dead_jobs(rt)[0]["last_error"].startswith("Zoho INVALID_DATA")
    queue.enqueue(rt, "Contacts", [3])  # fixed in OnPrintShop: the dead job is revived, not duplicated
    status = queue.status(rt)
    assert (status["pending"], status["dead"]) == (1, 0)
    with pytest.raises(queue.UnknownModule):
        queue.enqueue(rt, "Leads", [1])


@pytest.mark.parametrize("ending", ["complete", "bury"])
def test_a_change_merged_while_the_batch_settles_is_not_lost(rt, ending):
    """A change (here a forced push from the admin page) arrives for a record whose job is in
    flight, and its merge still holds the row when the sender settles the batch: the settle waits
    for it and sends the record again, forced, instead of ending the job and losing the change."""
    queue.enqueue(rt, "Contacts", range(1, 101))
    holder = new_holder_id()
    ids = [job.id for job in queue.claim(rt.store, holder, "Contacts")]
    merged = threading.Event()
    held: dict = {}

    def merge_and_hold(conn):
        with LockWaiters(conn) as waiters:
            queue.enqueue_in(conn, rt.store, "Contacts", [42], force=True)
            merged.set()
            # Hold the row until the settle below is really waiting for it.
            try:
                held["waiters"] = wait_until(waiters.count, timeout=30, message="the settle to wait for the merged row")
            except BaseException as exc:  # reported by the test's thread
                held["error"] = exc

    merger = threading.Thread(target=rt.store.transaction, args=(merge_and_hold,))
    merger.start()
    assert merged.wait(10)
    if ending == "complete":
        rt.store.transaction(lambda conn: queue.complete(conn, holder, ids))
    else:
        rt.store.transaction(lambda conn: queue.bury(conn, holder, ids, "Zoho INVALID_DATA: invalid data (field Email)"))
    merger.join(10)
    assert not merger.is_alive()
    if "error" in held:
        raise held["error"]
    assert held["waiters"] >= 1  # the settle started while the merge held the row

    status = queue.status(rt)
    assert (status["pending"], status["in_flight"]) == (1, 0)
    assert status["done" if ending == "complete" else "dead"] == 99
    again = queue.claim(rt.store, new_holder_id(), "Contacts")
    assert [(job.ops_id, job.force, job.attempts) for job in again] == [(42, True, 0)]


def test_concurrent_claims_never_share_a_job(rt):
    queue.enqueue(rt, "Deals", range(1, 301))
    claimed: list[int] = []
    lock = threading.Lock()
    barrier = threading.Barrier(6)

    def claimer():
        holder = new_holder_id()
        barrier.wait()
        while True:
            jobs = queue.claim(rt.store, holder, "Deals", limit=20)
            if not jobs:
                return
            with lock:
                claimed.extend(j.id for j in jobs)

    threads = [threading.Thread(target=claimer) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(claimed) == 300 and len(set(claimed)) == 300


def test_a_killed_workers_jobs_are_claimed_again_and_a_stopping_one_hands_them_back(rt):
    queue.enqueue(rt, "Contacts", [1, 2, 3])
    dead_worker = new_holder_id()
    queue.claim(rt.store, dead_worker, "Contacts", limit=2, lease_seconds=0.05)
    assert queue.claim(rt.store, new_holder_id(), "Contacts", limit=5)[0].ops_id == 3
    reclaimed = wait_until(lambda: queue.reclaim_lapsed(rt.store), timeout=10, message="the dead worker's leases to lapse")
    assert reclaimed == 2  # both of its jobs at once, not the live worker's
    stopping = new_holder_id()
    assert [j.ops_id for j in queue.claim(rt.store, stopping, "Contacts")] == [1, 2]
    assert queue.renew(rt.store, stopping) == 2
    assert queue.release(rt.store, stopping) == 2
    assert queue.status(rt)["pending"] == 2


def test_finished_jobs_are_purged_after_the_retention_and_nothing_else(rt):
    queue.enqueue(rt, "Contacts", [1, 2])
    holder = new_holder_id()
    jobs = queue.claim(rt.store, holder, "Contacts", limit=1)
    with rt.store.begin() as conn:
        queue.complete(conn, holder, [j.id for j in jobs])
    assert queue.purge_finished(rt, time.time() - 3600) == 0
    assert queue.purge_finished(rt, time.time() + 1) == 1
    status = queue.status(rt)
    assert (status["pending"], status["done"]) == (1, 0)
