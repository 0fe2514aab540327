"""The two-gunicorn KILL drill on a PostgreSQL state store: Zoho's concurrency cap holds throughout
(5,000 customers, 2.5 s a call, 429 past 5 in flight, each instance SIGKILLed in turn)."""
from __future__ import annotations

import os
import signal
import time

import pytest

from gateway.ops.database import demo
from gateway.outbound import queue
from gateway.settings import normalize_database_url
from tests.conftest import _server_url, reset_gateway_tables
from tests.outbound.conftest import Gateway, gunicorn

pytestmark = pytest.mark.slow

RECORDS = 5000
LATENCY = 2.5
LIMIT = 5


def _kill(instance) -> None:
    os.killpg(instance.proc.pid, signal.SIGKILL)  # master and workers, calls in flight
    instance.proc.wait(10)


def _wait_for(condition, seconds: float) -> bool:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def test_two_gunicorns_each_killed_in_turn_never_exceed_zohos_concurrency(tmp_path, make_app, fake_zoho, zoho_settings):
    state = normalize_database_url(_server_url("TEST_PG_URL", "PostgreSQL state store"))
    reset_gateway_tables(state)
    gw = Gateway(make_app(DATABASE_URL=state, **zoho_settings), fake_zoho)
    demo.create(gw.rt.ops, force=True)
    gw.connect()
    queue.enqueue(gw.rt, "Contacts", gw.add_customers(RECORDS))
    fake_zoho.latency = LATENCY
    fake_zoho.concurrency_limit = LIMIT
    fake_zoho.max_in_flight = 0
    env = {"DATABASE_URL": state, "OPS_DATABASE_URL": gw.rt.config["OPS_DATABASE_URL"],
           "GATEWAY_INSTANCE_PATH": str(tmp_path / "instance"), "GATEWAY_ZOHO_CONCURRENCY": str(LIMIT),
           "GATEWAY_POLL_SECONDS": "0", **zoho_settings}
    upserted = lambda: fake_zoho.upserted["Contacts"]  # noqa: E731
    a, b = gunicorn(env), gunicorn(env)
    try:
        assert _wait_for(lambda: upserted() >= RECORDS // 5, 90), a.output()
        _kill(a)
        a = gunicorn(env)
        assert _wait_for(lambda: upserted() >= RECORDS // 2, 90), b.output()
        _kill(b)
        b = gunicorn(env)
        _wait_for(lambda: queue.status(gw.rt)["done"] >= RECORDS, 150)
    finally:
        a.stop()
        b.stop()
    status = queue.status(gw.rt)
    assert (status["done"], status["dead"], status["pending"]) == (RECORDS, 0, 0), a.output()
    assert len(fake_zoho.records["Contacts"]) == RECORDS
    assert fake_zoho.calls["429 TOO_MANY_REQUESTS"] == 0
    assert fake_zoho.max_in_flight <= LIMIT
