"""Retries: 429 with and without Retry-After slows the whole queue; a 5xx storm is retried, then delivered."""
from __future__ import annotations

import random
import time

import sqlalchemy as sa

from gateway.outbound import pause as pauses, queue, retry
from gateway.state import tables
from tests.conftest import wait_until

FAST = retry.RetryPolicy(base=0.02, cap=0.05, max_attempts=6)


def attempts(gw):
    with gw.rt.store.engine.connect() as conn:
        return sorted(conn.execute(sa.select(tables.jobs_table.c.attempts)).scalars())


def due_times(gw):
    with gw.rt.store.engine.connect() as conn:
        return conn.execute(sa.select(tables.jobs_table.c.next_try_at)).all()


def pass_time(gw, seconds: float) -> None:
    """Move the queue's clock on by `seconds`: the stored pause ends and the jobs fall due that much
    earlier, as if that time had passed (instead of sleeping through it)."""
    pause = gw.rt.store.get_setting(pauses.PAUSE_SETTING)
    gw.rt.store.set_setting(pauses.PAUSE_SETTING, {**pause, "until": pause["until"] - seconds})
    with gw.rt.store.begin() as conn:
        conn.execute(tables.jobs_table.update().values(next_try_at=tables.jobs_table.c.next_try_at - seconds))


def test_a_429_with_retry_after_pauses_the_whole_queue_until_then_and_costs_no_attempt(gw):
    ids = gw.add_customers(150)
    gw.fake.fail_next = [(429, {"Retry-After": "60"})]
    queue.enqueue(gw.rt, "Contacts", ids)
    before = time.time()
    gw.drain()
    after = time.time()
    status = queue.status(gw.rt)
    assert status["paused"] and "slow down" in status["paused_reason"]
    assert gw.fake.upsert_calls["Contacts"] == 1
    until = pauses.current_pause(gw.rt.store)["until"]
    assert before + 60 <= until <= after + 60  # as long as Retry-After says
    assert max(r.next_try_at for r in due_times(gw)) == until  # the batch that got the 429 waits as long
    gw.drain()  # still inside Retry-After: nothing is sent, not even the other batch
    assert gw.fake.upsert_calls["Contacts"] == 1
    assert set(attempts(gw)) == {0}

    pass_time(gw, until - time.time() + 0.1)  # Retry-After is over
    gw.drain()
    assert gw.fake.upsert_calls["Contacts"] == 3
    assert len(gw.fake.records["Contacts"]) == 150
    assert not queue.status(gw.rt)["paused"]


def settled_after_drain(gw, policy) -> bool:
    """Send what is due; True once no job is left pending or in flight (each is done or dead)."""
    gw.drain(policy=policy)
    status = queue.status(gw.rt)
    return status["pending"] + status["in_flight"] == 0


def test_a_429_without_retry_after_backs_off_growing(gw_sqlite):
    gw = gw_sqlite
    queue.enqueue(gw.rt, "Contacts", gw.add_customers(2))
    gw.fake.fail_next = [429, 429]
    waits = []
    for _ in range(2):
        before = time.time()
        gw.drain()
        pause = pauses.current_pause(gw.rt.store)
        assert pause["kind"] == "throttled"
        waits.append(pause["until"] - before)
        assert {r.next_try_at for r in due_times(gw)} == {pause["until"]}  # the jobs wait as long as the queue
        # Pretend the wait is over (instead of sleeping through it).
        gw.rt.store.set_setting(pauses.PAUSE_SETTING, {**pause, "until": time.time() - 1})
        with gw.rt.store.begin() as conn:
            conn.execute(tables.jobs_table.update().values(next_try_at=0))
    assert 1 <= waits[0] <= 1 + retry.THROTTLE_POLICY.ceiling(1) + 0.5
    assert pauses.throttle_streak(gw.rt.store) == 2
    gw.drain()
    assert len(gw.fake.records["Contacts"]) == 2
    assert pauses.throttle_streak(gw.rt.store) == 0  # a call went through: the backoff starts afresh


def test_a_5xx_storm_is_retried_with_backoff_then_delivered(gw):
    ids = gw.add_customers(120)
    queue.enqueue(gw.rt, "Contacts", ids)
    gw.fake.fail_next = [500, 503, 500, 502]  # the storm's first calls all fail ...
    gw.fake.fault_rate = 0.3  # ... and then a third of them, at random
    patient = retry.RetryPolicy(base=0.01, cap=0.03, max_attempts=60)
    wait_until(lambda: settled_after_drain(gw, patient), timeout=20, interval=0.03,
               message=lambda: f"every job done or dead through the storm: {queue.status(gw.rt)}")
    scripted = sum(n for name, n in gw.fake.calls.items() if name.startswith("scripted 5"))
    assert scripted == 4
    assert len(gw.fake.records["Contacts"]) == 120
    status = queue.status(gw.rt)
    assert (status["done"], status["dead"]) == (120, 0)
    with gw.rt.store.engine.connect() as conn:
        assert max(conn.execute(sa.select(tables.jobs_table.c.attempts)).scalars()) >= 2  # the failed tries were counted


def test_retries_run_out_into_dead_jobs_that_retry_dead_sends_again(gw_sqlite, runner_for):
    gw = gw_sqlite
    ids = gw.add_customers(3)
    queue.enqueue(gw.rt, "Contacts", ids)
    gw.fake.fail_next = [500] * FAST.max_attempts
    wait_until(lambda: settled_after_drain(gw, FAST), timeout=10, interval=0.06,
               message=lambda: f"every job dead after {FAST.max_attempts} failed attempts: {queue.status(gw.rt)}")
    status = queue.status(gw.rt)
    assert status["dead"] == 3 and "HTTP 500" in status["last_error"]
    assert gw.fake.calls["scripted 500"] == FAST.max_attempts
    dead = queue.dead_jobs(gw.rt)
    assert {d["attempts"] for d in dead} == {FAST.max_attempts} and "HTTP 500" in dead[0]["last_error"]

    result = runner_for(gw.app).invoke(args=["queue", "retry-dead", "--all"])
    assert result.exit_code == 0 and result.output == "moved 3 dead jobs back to pending\n"
    gw.drain()
    assert len(gw.fake.records["Contacts"]) == 3 and queue.status(gw.rt)["dead"] == 0


def test_the_default_policy_waits_about_a_day_in_all_with_full_jitter():
    policy = retry.DEFAULT_POLICY
    schedule = policy.schedule()
    assert schedule[0] == 30 and schedule[1] == 60 and max(schedule) == 6 * 3600
    assert 20 * 3600 < sum(schedule) / 2 < 30 * 3600  # full jitter: on average half of each ceiling
    rng = random.Random(1)
    assert all(0 <= policy.next_delay(n, rng) <= policy.ceiling(n) for n in range(1, policy.max_attempts))
    assert policy.next_delay(policy.max_attempts) is None


def test_a_401_a_fresh_token_does_not_cure_pauses_the_queue_without_burning_attempts(gw_sqlite):
    gw = gw_sqlite
    queue.enqueue(gw.rt, "Contacts", gw.add_customers(2))
    gw.fake.fail_next = [(401, {})]  # not INVALID_TOKEN: e.g. the client lacks the scope
    gw.drain()
    status = queue.status(gw.rt)
    assert status["paused"] and "scope" in status["paused_reason"]
    assert (status["pending"], status["dead"]) == (2, 0) and set(attempts(gw)) == {0}


def test_zoho_rejecting_every_fresh_token_pauses_the_queue_without_refreshing_again_and_again(gw_sqlite):
    from gateway.simulator import Response

    gw = gw_sqlite
    queue.enqueue(gw.rt, "Contacts", gw.add_customers(2))
    rejected = Response(401, {"code": "INVALID_TOKEN", "details": {}, "message": "invalid oauth token", "status": "error"})
    gw.fake.check_auth = lambda req: rejected  # e.g. ZOHO_API_URL names another data center's API
    refreshes = gw.fake.calls["oauth.refresh"]
    for _ in range(3):
        gw.drain()
        status = queue.status(gw.rt)
        assert status["paused"] and (status["pending"], status["dead"]) == (2, 0) and set(attempts(gw)) == {0}
        # The refused pause is over (instead of waiting its five minutes): the next batch goes.
        gw.rt.store.set_setting(pauses.PAUSE_SETTING, {**pauses.current_pause(gw.rt.store), "until": time.time() - 1})
        with gw.rt.store.begin() as conn:
            conn.execute(tables.jobs_table.update().values(next_try_at=0))
    assert gw.fake.calls["oauth.refresh"] == refreshes + 1  # one refresh, then the cooldown: not one per batch
    assert "token refresh skipped" in status["paused_reason"]
