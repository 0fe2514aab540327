"""No request gets a 500 or a traceback for what it sent: pathological query strings, headers and
bodies swept across every endpoint of the app."""
from __future__ import annotations

import json
import time
import uuid

import pytest

from gateway.inbound import secrets
from gateway.outbound import events
from tests.conftest import logged_in

DEEP_JSON = b"[" * 20000 + b"]" * 20000
QUERIES = [
    "x=" + "a=" * 1200 + "a",                       # nested '=' that made masking recurse
    "next=" + "%3F".join(["/admin?next=/a"] * 300),  # nested URLs
    "&".join(f"p{n}={n}" for n in range(5000)),       # many parameters
    "token=%zz%00%ff&code=%E2%82&state=%",            # bad percent-encoding, NUL, cut UTF-8
    "id=" + "9" * 400,                                # an absurd number
    "x=" + "é" * 5000,
]
HEADERS = [
    {"X-Request-Id": "a" * 5000},
    {"X-Request-Id": "\u00ff\u00fe"},
    {"X-Webhook-Token": "x" * 10000},
    {"X-Webhook-Token": "\u00e9\u00e9"},
    {"Content-Type": "multipart/form-data"},                       # no boundary
    {"Content-Type": "multipart/form-data; boundary=" + "b" * 300},
    {"Content-Type": "application/json; charset=ebcdic"},
    {"Content-Type": "text/plain"},
    {"Cookie": "session=" + "x" * 3000},
    {"Cookie": "session=.eJwrSS0u0S0oyk9OLS5OTVEwNDJWMFQwUjIEAMT6CP4.invalid.sig"},
    {"webhook-id": "\u00ff" * 300, "webhook-timestamp": "9" * 40, "webhook-signature": "v1," + "=" * 500},
    {"webhook-timestamp": "-1e309", "webhook-id": "x", "webhook-signature": "v2,abc v1"},
    {"Accept": "*/*;q=" + "9" * 300},
    {"If-Modified-Since": "Thu, 99 Foo 99999 99:99:99 GMT"},
]
BODIES = [
    (b"", "application/json"),
    (DEEP_JSON, "application/json"),
    (DEEP_JSON, "text/plain"),
    (b'{"id": "\xb2", "type": "order.updated"}', "application/json"),
    (json.dumps({"id": "²", "type": "order.updated"}).encode(), "application/json"),
    (json.dumps([{"id": 1, "type": "order.updated"}] * 600).encode(), "application/json"),
    (b"\xff\xfe\x00garbage", "application/x-www-form-urlencoded"),
    ("&".join(f"f{n}=v" for n in range(5000)).encode(), "application/x-www-form-urlencoded"),
    (b"--b\r\nContent-Disposition: form-data; name=\"id\"\r\n\r\n9\r\n--b--", "multipart/form-data; boundary=zz"),
    (b"id=1&id=2&stage=" + b"%F0%9F" * 100, "application/x-www-form-urlencoded"),
    (b"<xml/>", "application/xml"),
    (b"x" * (70 * 1024), "application/x-www-form-urlencoded"),
]


def _routes(app):
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            yield method, rule.rule


def _assert_no_failure(response, logs, what):
    assert response.status_code != 500, what
    assert "Traceback" not in logs() and "unhandled error" not in logs(), what


@pytest.mark.parametrize("authenticated", [False, True], ids=["anonymous", "admin"])
def test_no_endpoint_answers_500_to_what_a_request_sends(make_app, gateway_logs, authenticated):
    app = make_app(RATELIMIT_ENABLED=False)
    client = logged_in(app).client if authenticated else app.test_client()
    routes = list(_routes(app))
    assert len(routes) >= 18  # every endpoint is swept, admin pages included
    for method, path in routes:
        for query in QUERIES:
            r = client.open(f"{path}?{query}", method=method)
            _assert_no_failure(r, gateway_logs, f"{method} {path}?{query[:40]}…")
        for headers in HEADERS:
            r = client.open(path, method=method, headers=headers, data=b"id=1")
            _assert_no_failure(r, gateway_logs, f"{method} {path} {list(headers)}")
        if method == "POST":
            for body, content_type in BODIES:
                r = client.open(path, method=method, data=body, content_type=content_type)
                _assert_no_failure(r, gateway_logs, f"{method} {path} {content_type} {body[:30]!r}")


def test_authenticated_deliveries_with_pathological_bodies_get_4xx(make_app, gateway_logs):
    """With the right webhook secret or a valid events signature, a bad body is still a 4xx."""
    app = make_app(RATELIMIT_ENABLED=False)
    rt = app.extensions["gateway"]
    client = app.test_client()
    token = secrets.webhook_secrets(rt)["current"]
    events_secret = events.events_secret(rt)
    for body, content_type in BODIES:
        for module in ("contacts", "deals"):
            r = client.post(f"/webhooks/zoho/{module}", data=body, content_type=content_type,
                            headers={"X-Webhook-Token": token})
            _assert_no_failure(r, gateway_logs, f"{module} {content_type} {body[:30]!r}")
            assert 400 <= r.status_code < 500, (module, body[:30], r.get_json())
        webhook_id, stamp = f"msg_{uuid.uuid4().hex}", str(int(time.time()))
        r = client.post("/api/v1/events", data=body, content_type=content_type, headers={
            "webhook-id": webhook_id, "webhook-timestamp": stamp,
            "webhook-signature": events.sign(events_secret, webhook_id, stamp, body)})
        _assert_no_failure(r, gateway_logs, f"events {content_type} {body[:30]!r}")
        assert 400 <= r.status_code < 500, (body[:30], r.get_json())


def test_a_wrong_webhook_secret_is_refused_before_the_body_is_read(make_app):
    """With the secret in the header, a wrong one is a 401 whatever the body: it is not even read
    (a 70 KiB body would otherwise be judged first, as too large)."""
    app = make_app(RATELIMIT_ENABLED=False)
    client = app.test_client()
    r = client.post("/webhooks/zoho/deals", data=b"x" * (70 * 1024), content_type="application/x-www-form-urlencoded",
                    headers={"X-Webhook-Token": "a wrong guess"})
    assert r.status_code == 401 and "wrong webhook secret" in r.get_json()["error"]
    right = secrets.webhook_secrets(app.extensions["gateway"])["current"]
    r = client.post("/webhooks/zoho/deals", data=b"x" * (70 * 1024), content_type="application/x-www-form-urlencoded",
                    headers={"X-Webhook-Token": right})
    assert r.status_code == 413
