"""POST /api/v1/events: Standard Webhooks signatures, 5-minute tolerance, each webhook-id once."""
from __future__ import annotations

import base64
import json
import time

import pytest
import sqlalchemy as sa

from gateway.outbound import events, queue
from gateway.state import tables

# The example of the Standard Webhooks specification (and its reference libraries).
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID, SPEC_TS, SPEC_BODY = "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_signing_matches_the_specification_example():
    assert events.sign(SPEC_SECRET, SPEC_ID, SPEC_TS, SPEC_BODY) == SPEC_SIGNATURE
    headers = {"webhook-id": SPEC_ID, "webhook-timestamp": str(SPEC_TS),
               "webhook-signature": "v1,bm90IGl0 " + SPEC_SIGNATURE}  # several signatures, one valid
    assert events.verify([SPEC_SECRET], headers, SPEC_BODY, now=SPEC_TS + 299) == SPEC_ID
    with pytest.raises(events.SignatureError, match="away from now"):
        events.verify([SPEC_SECRET], headers, SPEC_BODY, now=SPEC_TS + 301)
    with pytest.raises(events.SignatureError, match="no webhook-signature matches"):
        events.verify([SPEC_SECRET], headers, SPEC_BODY + b" ", now=SPEC_TS)
    with pytest.raises(events.SignatureError, match="webhook-id header is missing"):
        events.verify([SPEC_SECRET], {**headers, "webhook-id": ""}, SPEC_BODY, now=SPEC_TS)
    with pytest.raises(events.SignatureError, match="no webhook-signature"):
        events.verify([SPEC_SECRET], {**headers, "webhook-signature": "v2," + SPEC_SIGNATURE[3:]}, SPEC_BODY, now=SPEC_TS)


def signed(secret, body, webhook_id="msg_1", timestamp=None):
    raw = json.dumps(body).encode()
    stamp = int(time.time()) if timestamp is None else timestamp
    return raw, {"webhook-id": webhook_id, "webhook-timestamp": str(stamp), "webhook-signature": events.sign(secret, webhook_id, stamp, raw),
                 "Content-Type": "application/json"}


def post(client, raw, headers):
    return client.post("/api/v1/events", data=raw, headers=headers)


def test_signed_events_are_queued_once_and_answered_202(app, client):
    rt = app.extensions["gateway"]
    secret = events.events_secret(rt)
    assert secret.startswith("whsec_") and events.events_secret(rt) == secret
    body = [{"type": "customer.updated", "id": 1}, {"type": "order.updated", "id": 2}, {"type": "order.updated", "id": 2}]
    raw, headers = signed(secret, body)
    answer = post(client, raw, headers)
    assert answer.status_code == 202 and answer.json == {"status": "accepted", "count": 3}
    status = queue.status(rt)
    assert status["pending"] == 2  # order 2 twice: one job

    again = post(client, raw, headers)  # the same delivery replayed (the sender lost our answer)
    assert again.status_code == 200 and again.json == {"status": "duplicate", "count": 0}
    assert queue.status(rt)["pending"] == 2


def test_bad_signatures_stale_timestamps_and_bad_events_are_refused_with_json(app, client):
    rt = app.extensions["gateway"]
    secret = events.events_secret(rt)
    raw, headers = signed("whsec_" + "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE=", {"type": "customer.updated", "id": 1})
    refused = post(client, raw, headers)
    assert refused.status_code == 401 and "webhook-signature" in refused.json["error"]
    raw, headers = signed(secret, {"type": "customer.updated", "id": 1}, webhook_id="old", timestamp=int(time.time()) - 301)
    assert post(client, raw, headers).status_code == 401
    raw, headers = signed(secret, {"type": "customer.deleted", "id": 1}, webhook_id="bad-type")
    bad = post(client, raw, headers)
    assert bad.status_code == 422 and bad.json["parameter"] == "type"
    raw, headers = signed(secret, [{"type": "order.updated", "id": "x"}], webhook_id="bad-id")
    assert post(client, raw, headers).json == {"error": "id must be a positive whole number (the OnPrintShop id)",
                                              "parameter": "[0].id"}
    raw, headers = signed(secret, [{"type": "order.updated", "id": n} for n in range(1, 502)], webhook_id="big")
    assert post(client, raw, headers).status_code == 413
    missing = client.post("/api/v1/events", data=b"{}", headers={"Content-Type": "application/json"})
    assert missing.status_code == 400 and missing.json["parameter"] == "webhook-id"
    assert queue.status(rt)["pending"] == 0
    # A validly signed delivery that was refused keeps its webhook-id: the sender's retry of it is a
    # duplicate (so it stops retrying), and nothing was queued; a corrected event is a new message.
    raw, headers = signed(secret, [{"type": "order.updated", "id": "x"}], webhook_id="bad-id")
    assert post(client, raw, headers).json == {"status": "duplicate", "count": 0}
    raw, headers = signed(secret, [{"type": "order.updated", "id": 5}], webhook_id="bad-id-corrected")
    assert post(client, raw, headers).status_code == 202
    assert queue.status(rt)["pending"] == 1


@pytest.mark.parametrize("event, parameter", [
    ({"type": "order.updated", "id": "²"}, "id"),            # str.isdigit() says yes, int() says no
    ({"type": "order.updated", "id": "١٢"}, "id"),           # Arabic-Indic digits
    ({"type": ["order.updated"], "id": 1}, "type"),          # not a string at all
])
def test_a_validly_signed_event_the_gateway_cannot_use_is_a_4xx_and_its_retry_a_duplicate(app, client, event, parameter):
    rt = app.extensions["gateway"]
    raw, headers = signed(events.events_secret(rt), event, webhook_id="odd")
    refused = post(client, raw, headers)
    assert refused.status_code == 422 and refused.json["parameter"] == parameter
    assert post(client, raw, headers).json == {"status": "duplicate", "count": 0}
    assert queue.status(rt)["pending"] == 0


def test_json_nested_20000_deep_is_a_400_not_a_503(app, client):
    rt = app.extensions["gateway"]
    raw = b"[" * 20000 + b"]" * 20000
    _unused, headers = signed(events.events_secret(rt), {}, webhook_id="deep")
    headers["webhook-signature"] = events.sign(events.events_secret(rt), "deep", headers["webhook-timestamp"], raw)
    refused = client.post("/api/v1/events", data=raw, headers=headers)
    assert refused.status_code == 400 and "JSON" in refused.json["error"]


def test_a_rotated_secret_keeps_the_previous_one_valid_for_a_day(app, client):
    rt = app.extensions["gateway"]
    old = events.events_secret(rt)
    new = events.rotate_events_secret(rt)
    assert new != old and events.events_secret(rt) == new
    newest = events.rotate_events_secret(rt)  # a second rotation the same day: the first one's grace holds
    for n, secret in enumerate((old, new, newest)):
        raw, headers = signed(secret, {"type": "customer.updated", "id": 1}, webhook_id=f"r{n}")
        assert post(client, raw, headers).status_code == 202
    raw, headers = signed("whsec_" + base64.b64encode(b"x" * 32).decode(), {"type": "customer.updated", "id": 1},
                          webhook_id="r-wrong")
    assert post(client, raw, headers).status_code == 401


def test_remembered_ids_are_purged_once_no_request_can_reuse_them(app, client):
    rt = app.extensions["gateway"]
    secret = events.events_secret(rt)
    raw, headers = signed(secret, {"type": "customer.updated", "id": 1}, webhook_id="kept")
    assert post(client, raw, headers).status_code == 202
    assert events.purge_seen_ids(rt, time.time() - 86400) == 0  # still inside the tolerance: kept
    with rt.store.begin() as conn:
        conn.execute(tables.event_ids_table.update().values(received_at=time.time() - 3600))
    assert events.purge_seen_ids(rt, time.time() - 86400) == 1


def test_the_events_endpoint_limits_refused_requests_not_a_burst_of_good_ones(make_app):
    app = make_app(RATELIMIT_ENABLED=True, GATEWAY_WEBHOOK_RATE_LIMIT="2 per minute")
    client = app.test_client()
    secret = events.events_secret(app.extensions["gateway"])
    codes = []
    for n in range(4):  # OnPrintShop sends a burst of genuine events: none is refused
        raw, headers = signed(secret, {"type": "customer.updated", "id": 1}, webhook_id=f"ok{n}")
        codes.append(post(client, raw, headers).status_code)
    assert codes == [202] * 4
    wrong = "whsec_" + base64.b64encode(b"x" * 32).decode()
    for n in range(3):  # someone guessing signatures
        raw, headers = signed(wrong, {"type": "customer.updated", "id": 1}, webhook_id=f"bad{n}")
        answer = post(client, raw, headers)
        codes.append(answer.status_code)
    assert codes[4:] == [401, 401, 429] and "error" in answer.json


class DatabaseBlip:
    """The state store goes away right after the webhook-id is written (until `back()`)."""

    def __init__(self, engine):
        self.engine = engine
        self.down = False
        sa.event.listen(engine, "before_cursor_execute", self._before)
        sa.event.listen(engine, "after_cursor_execute", self._after)

    def _before(self, conn, cursor, statement, parameters, context, executemany):
        if self.down:
            raise sa.exc.OperationalError(statement, parameters, ConnectionError("server has gone away"))

    def _after(self, conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("INSERT INTO GW_EVENT_IDS"):
            self.down = True

    def back(self):
        self.down = False
        sa.event.remove(self.engine, "before_cursor_execute", self._before)
        sa.event.remove(self.engine, "after_cursor_execute", self._after)


def test_a_database_blip_after_the_webhook_id_loses_no_event(make_app, state_db_url):
    app = make_app(DATABASE_URL=state_db_url)
    rt = app.extensions["gateway"]
    client = app.test_client()
    secret = events.events_secret(rt)
    raw, headers = signed(secret, [{"type": "customer.updated", "id": 7}, {"type": "order.updated", "id": 8}],
                          webhook_id="msg_blip")
    blip = DatabaseBlip(rt.store.write_engine)  # the engine write transactions run on
    try:
        failed = post(client, raw, headers)
    finally:
        blip.back()
    assert failed.status_code == 503 and blip.down is False
    assert queue.status(rt)["pending"] == 0
    retried = post(client, raw, headers)  # the sender's retry of the same delivery goes through
    assert retried.status_code == 202, retried.json
    assert queue.pending_ids(rt, "Contacts", [7]) == {7} and queue.pending_ids(rt, "Deals", [8]) == {8}
    assert post(client, raw, headers).json == {"status": "duplicate", "count": 0}  # and only once
    assert queue.status(rt)["pending"] == 2


def test_the_same_delivery_sent_in_parallel_is_taken_once(make_app, state_db_url):
    import threading

    app = make_app(DATABASE_URL=state_db_url)
    rt = app.extensions["gateway"]
    raw, headers = signed(events.events_secret(rt), [{"type": "customer.updated", "id": n} for n in (1, 2, 3)],
                          webhook_id="msg_parallel")
    start = threading.Barrier(6)
    codes = []

    def send():
        client = app.test_client()
        start.wait()
        codes.append(post(client, raw, headers).status_code)

    threads = [threading.Thread(target=send) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(codes) == [200] * 5 + [202]
    assert queue.status(rt)["pending"] == 3
