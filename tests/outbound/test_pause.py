"""The queue's pause: a later 429 never cuts short or replaces a pause in force, and the 429s of
senders in flight together count once in the backoff streak."""
from __future__ import annotations

import threading
import time

from gateway.outbound import batch, pause as pauses, queue
from gateway.zoho import errors as zerr


def throttled(retry_after=None):
    return zerr.Throttled("Zoho says too many requests (HTTP 429)", retry_after=retry_after, code="TOO_MANY_REQUESTS")


def test_a_429_without_retry_after_does_not_cut_short_another_senders_retry_after(gw):
    start = time.time()
    batch.pause_for(gw.rt, throttled(retry_after=120))
    batch.pause_for(gw.rt, throttled())  # another sender's 429, answered a moment later, without Retry-After
    pause = pauses.current_pause(gw.rt.store)
    assert pause["kind"] == "throttled" and pause["until"] >= start + 120
    assert pause["streak"] == 1
    assert queue.status(gw.rt)["paused"]


def test_a_429_does_not_turn_a_reauthorization_pause_into_one_that_ends_by_itself(gw):
    batch.pause_for(gw.rt, zerr.ReauthorizationNeeded("invalid_code: the refresh token was revoked"))
    batch.pause_for(gw.rt, throttled(retry_after=1))
    batch.pause_for(gw.rt, zerr.ApiRefused("Zoho refused the request's authorization", status=401))
    pause = pauses.current_pause(gw.rt.store, now=time.time() + 3600)
    assert pause is not None and pause["kind"] == "reauthorization" and pause["until"] is None
    assert "re-authorization" in queue.status(gw.rt)["paused_reason"]


def test_a_longer_pause_replaces_a_shorter_one(gw):
    batch.pause_for(gw.rt, throttled(retry_after=2))
    batch.pause_for(gw.rt, zerr.ApiRefused("Zoho refused the request's authorization", status=401))  # 5 minutes
    pause = pauses.current_pause(gw.rt.store)
    assert pause["kind"] == "refused" and pause["until"] >= time.time() + batch.REFUSED_PAUSE_SECONDS - 5
    batch.pause_for(gw.rt, zerr.ReauthorizationNeeded("invalid_code"))  # no end at all: always wins
    assert pauses.current_pause(gw.rt.store)["kind"] == "reauthorization"


def test_429s_of_senders_in_flight_together_make_one_pause_counted_once(gw):
    barrier = threading.Barrier(8)
    errors = []

    def sender(n):
        barrier.wait()
        try:
            batch.pause_for(gw.rt, throttled(retry_after=120 if n == 5 else None))
        except Exception as exc:  # reported below
            errors.append(exc)

    start = time.time()
    threads = [threading.Thread(target=sender, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    pause = pauses.current_pause(gw.rt.store)
    assert pause["kind"] == "throttled" and pause["streak"] == 1
    assert pause["until"] >= start + 120  # the one Retry-After wins, whoever came last

    # The next pause (after this one is over) counts as the second in a row.
    gw.rt.store.set_setting(pauses.PAUSE_SETTING, {**pause, "until": time.time() - 1})
    batch.pause_for(gw.rt, throttled())
    assert pauses.current_pause(gw.rt.store)["streak"] == 2
