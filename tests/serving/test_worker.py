"""The buffering worker serves HTTP/1.1 as gthread did: real sockets, the Procfile's gunicorn.

Keep-alive, pipelining, chunked, 100-continue, body limits, X-Forwarded-For, access log, graceful stop.
"""
from __future__ import annotations

import json
import os
import signal
import time

import pytest
from gunicorn.config import Config

from gateway import MAX_ADMIN_BODY
from gateway.inbound.body import MAX_BODY as WEBHOOK_MAX_BODY
from gateway.serving.worker import BufferingWorker
from tests.serving.conftest import Raw, Served, chunked_webhook


@pytest.fixture(scope="module")
def proxied(tmp_path_factory):
    """Behind one proxy hop (GATEWAY_PROXY_HOPS=1), logging JSON lines; no background work (it stops slowly)."""
    server = Served(tmp_path_factory.mktemp("served"), GATEWAY_PROXY_HOPS="1", GATEWAY_LOG_FORMAT="json",
                    GATEWAY_RUN_WORKER="0")
    yield server
    server.stop()


def webhook_request(served: Served, body: bytes | None = None, extra: str = "") -> bytes:
    body = served.webhook_body() if body is None else body
    head = "".join(f"{k}: {v}\r\n" for k, v in served.webhook_headers().items())
    return (f"POST /webhooks/zoho/contacts HTTP/1.1\r\nHost: gw\r\n{head}{extra}Content-Length: {len(body)}\r\n\r\n"
            .encode() + body)


def wait_for(condition, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_the_worker_refuses_settings_it_cannot_buffer():
    cfg = Config()
    cfg.set("http2_cleartext", "prior-knowledge")
    with pytest.raises(RuntimeError, match="http2_cleartext"):
        BufferingWorker.check_config(cfg, log=None)
    BufferingWorker.check_config(Config(), log=None)


def test_the_buffering_limit_lets_the_app_see_its_own_limits_exceeded():
    assert BufferingWorker.max_body > MAX_ADMIN_BODY >= WEBHOOK_MAX_BODY


def test_a_kept_alive_connection_serves_one_request_after_another(proxied):
    conn = proxied.connection()
    try:
        conn.request("GET", "/healthz")
        assert conn.getresponse().read() == b'{"status":"ok"}\n'
        first = conn.sock
        assert proxied.post_webhook(conn) == (200, {"status": "applied"})
        conn.request("GET", "/healthz")
        assert conn.getresponse().status == 200
        assert conn.sock is first
    finally:
        conn.close()


def test_pipelined_requests_are_answered_in_order(proxied):
    raw = Raw(proxied.port)
    try:
        raw.send(b"GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n" + webhook_request(proxied) + b"GET /nowhere HTTP/1.1\r\nHost: gw\r\n\r\n")
        assert raw.response()[0] == 200
        status, _, body = raw.response()
        assert (status, json.loads(body)) == (200, {"status": "applied"})
        assert raw.response()[0] == 404
    finally:
        raw.close()


def test_a_chunked_body_is_read_whole(proxied):
    assert chunked_webhook(proxied) == (200, {"status": "applied"})


def test_expect_100_continue_is_answered_once_before_the_body(proxied):
    request = webhook_request(proxied, extra="Expect: 100-continue\r\n")
    head, _, body = request.partition(b"\r\n\r\n")
    raw = Raw(proxied.port)
    try:
        raw.send(head + b"\r\n\r\n")
        assert raw.response()[0] == 100  # before any of the body is sent
        raw.send(body)
        status, _, answer = raw.response()
        assert (status, json.loads(answer)) == (200, {"status": "applied"})
        raw.send(b"GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n")
        assert raw.response()[0] == 200  # no second 100 was waiting in between
    finally:
        raw.close()


@pytest.mark.parametrize("chunked", [False, True])
def test_a_webhook_body_over_64_kib_is_refused_by_the_app(proxied, chunked):
    body = b"first_name=" + b"a" * (64 * 1024)
    raw = Raw(proxied.port)
    try:
        if chunked:
            head = webhook_request(proxied, b"").split(b"Content-Length")[0]
            raw.send(head + b"Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
        else:
            raw.send(webhook_request(proxied, body))
        status, _, answer = raw.response()
        assert status == 413 and "64 KiB" in json.loads(answer)["error"]
    finally:
        raw.close()


def _login_post(size: int, send_body: bool = True) -> bytes:
    body = b"password=wrong-password&pad=" + b"a" * (size - 28)
    assert len(body) == size
    return (b"POST /admin/login HTTP/1.1\r\nHost: gw\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (size, body if send_body else b""))


def test_admin_forms_up_to_1_mib_are_read_and_larger_ones_refused(proxied):
    raw = Raw(proxied.port, timeout=10)
    try:
        raw.send(_login_post(1024 * 1024))
        assert raw.response()[0] in (400, 401)  # read whole and judged (no CSRF token), not refused for its size
        raw.send(_login_post(1024 * 1024 + 1))
        assert raw.response()[0] == 413
    finally:
        raw.close()
    raw = Raw(proxied.port)
    try:
        raw.send(_login_post(4 * 1024 * 1024, send_body=False))  # too large to buffer: the app answers unread
        status, headers, _ = raw.response()
        assert status == 413 and headers["connection"] == "close" and raw.closed()
    finally:
        raw.close()


def test_clients_keeping_their_side_open_after_connection_close_do_not_stall_the_worker(proxied):
    # gthread closes such connections in its event loop, waiting up to 2 s for each client's FIN.
    raws = [Raw(proxied.port) for _ in range(10)]
    try:
        for raw in raws:
            raw.send(b"GET /healthz HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n")
        assert all(raw.response()[0] == 200 for raw in raws)
        for _ in range(4):
            started = time.monotonic()
            assert proxied.get("/healthz").status == 200 and time.monotonic() - started < 2.0
    finally:
        for raw in raws:
            raw.close()


def test_the_forwarded_address_reaches_the_access_log(proxied):
    proxied.get("/healthz?probe=forwarded", headers={"X-Forwarded-For": "203.0.113.9"})

    def logged():
        lines = [json.loads(line) for line in proxied.output().splitlines() if line.startswith("{")]
        return [line for line in lines if line.get("path") == "/healthz?probe=forwarded"]

    assert wait_for(logged)
    assert logged()[0]["remote"] == "203.0.113.9" and logged()[0]["status"] == 200


def test_a_malformed_chunked_body_is_refused_and_the_connection_closed(proxied):
    raw = Raw(proxied.port)
    try:
        raw.send(webhook_request(proxied, b"").split(b"Content-Length")[0]
                 + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n")
        # The app fails reading it (today it answers 503, under gthread too); this worker closes after.
        status, headers, _ = raw.response()
        assert status >= 400 and headers["connection"] == "close" and raw.closed()
    finally:
        raw.close()


def test_a_head_over_64_kib_is_answered_431(proxied):
    raw = Raw(proxied.port)
    try:
        raw.send(b"GET /healthz HTTP/1.1\r\n")
        for _ in range(9):
            raw.send(b"X-Filler: " + b"a" * 8000 + b"\r\n")
        assert raw.response()[0] == 431 and raw.closed()
    finally:
        raw.close()


@pytest.mark.slow  # a stop this soon after start can wait ~10 s for the queue worker's senders (gthread too)
def test_a_stop_finishes_the_request_being_read_and_runs_the_worker_hooks(tmp_path):
    served = Served(tmp_path)
    request = webhook_request(served)
    raw = Raw(served.port, timeout=10)
    try:
        raw.send(b"GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n")
        assert raw.response()[0] == 200  # the connection is a worker's now, not waiting in the listen queue
        raw.send(request[:-10])  # the head and most of the body
        os.killpg(served.proc.pid, signal.SIGTERM)
        assert wait_for(lambda: "Worker exiting" in served.output())  # the idle worker is gone; ours is stopping
        raw.send(request[-10:])
        status, headers, answer = raw.response()
        assert (status, json.loads(answer), headers["connection"]) == (200, {"status": "applied"}, "close")
    finally:
        raw.close()
    assert served.stop() == 0
    log = served.output()
    # post_worker_init started each worker's background work, worker_exit stopped it
    assert log.count("queue worker") >= 4 and log.count("started with") == 2 and log.count("stopped; handed back") == 2, log


def test_a_malformed_chunked_body_is_a_400_not_a_traceback(served):
    raw = Raw(served.port)
    try:
        head = "".join(f"{k}: {v}\r\n" for k, v in served.webhook_headers().items())
        raw.send(f"POST /webhooks/zoho/deals HTTP/1.1\r\nHost: gateway.test\r\n{head}Transfer-Encoding: chunked\r\n\r\n".encode())
        raw.send(b"zz\r\nid=9\r\n0\r\n\r\n")  # "zz" is not a chunk size
        status, _headers, answer = raw.response()
    finally:
        raw.close()
    assert status == 400 and "could not be read" in json.loads(answer)["error"]
    assert "Traceback" not in served.output()
