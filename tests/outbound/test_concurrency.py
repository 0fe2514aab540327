"""GATEWAY_ZOHO_CONCURRENCY holds for the whole deployment, however many processes share the queue."""
from __future__ import annotations

import os
import signal
import threading

import pytest

from gateway.outbound import queue, worker
from tests.conftest import wait_until
from tests.outbound.conftest import Gateway, gunicorn


def test_two_workers_on_one_state_store_never_exceed_the_concurrency_together(gw, make_app, zoho_settings):
    # Two apps on the same databases stand for two processes: each has its own gate and senders.
    config = {k: gw.rt.config[k] for k in ("DATABASE_URL", "OPS_DATABASE_URL")}
    apps = [gw.app, make_app(**config, **zoho_settings, GATEWAY_ZOHO_CONCURRENCY=2)]
    gw.app.config["GATEWAY_ZOHO_CONCURRENCY"] = 2
    gw.fake.latency = 0.05
    gw.fake.concurrency_limit = 2  # Zoho itself answers 429 past the limit
    ids = gw.add_customers(1200)
    queue.enqueue(gw.rt, "Contacts", ids)
    gw.fake.max_in_flight = 0
    stop = threading.Event()
    threads = [threading.Thread(target=worker.Worker(app.extensions["gateway"], senders=4).run, args=(stop,)) for app in apps]
    for t in threads:
        t.start()
    try:
        wait_until(lambda: queue.status(gw.rt)["done"] >= 1200, timeout=60, interval=0.1,
                   message=lambda: f"all 1200 sent: {queue.status(gw.rt)}")
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert queue.status(gw.rt)["done"] == 1200
    assert gw.fake.max_in_flight == 2
    assert gw.fake.calls["429 TOO_MANY_REQUESTS"] == 0
    assert gw.fake.upsert_calls["Contacts"] == 12
    assert queue.status(gw.rt)["in_flight"] == 0  # stopping handed every lease back


@pytest.mark.slow
@pytest.mark.mariadb  # its state store is MariaDB's when TEST_MYSQL_URL is set
def test_two_gunicorn_processes_share_the_concurrency_and_a_killed_one_loses_nothing(tmp_path, make_app, fake_zoho, zoho_settings):
    """The KILL drill: 5,000 customers, SIGKILL halfway, restart: all 5,000 in Zoho, none dead."""
    state = f"sqlite:///{tmp_path}/state.db"
    if os.environ.get("TEST_MYSQL_URL"):
        from gateway.settings import normalize_database_url
        from tests.conftest import reset_gateway_tables

        state = normalize_database_url(os.environ["TEST_MYSQL_URL"])
        reset_gateway_tables(state)
    app = make_app(DATABASE_URL=state, **zoho_settings)
    gw = Gateway(app, fake_zoho)
    from gateway.ops.database import demo

    demo.create(gw.rt.ops, force=True)
    gw.connect()
    ids = gw.add_customers(5000)
    queue.enqueue(gw.rt, "Contacts", ids)
    fake_zoho.latency = 0.3
    fake_zoho.concurrency_limit = 3
    fake_zoho.max_in_flight = 0
    env = {"DATABASE_URL": state, "OPS_DATABASE_URL": gw.rt.config["OPS_DATABASE_URL"],
           "GATEWAY_INSTANCE_PATH": str(tmp_path / "instance"), "GATEWAY_ZOHO_CONCURRENCY": "3",
           "GATEWAY_POLL_SECONDS": "0", **zoho_settings}

    first = gunicorn(env, workers=2)
    try:
        wait_until(lambda: fake_zoho.upserted["Contacts"] >= 2000, timeout=60, interval=0.05,
                   message=lambda: f"2000 of 5000 in Zoho ({fake_zoho.upserted['Contacts']}): {first.output()}")
        os.killpg(first.proc.pid, signal.SIGKILL)  # master and both workers, mid-flight
        first.proc.wait(10)
    finally:
        first.stop()
    done_at_kill = fake_zoho.upserted["Contacts"]
    assert done_at_kill < 5000

    second = gunicorn(env, workers=2)
    try:
        wait_until(lambda: queue.status(gw.rt)["done"] >= 5000, timeout=150, interval=0.5,
                   message=lambda: f"all 5000 sent after the restart: {queue.status(gw.rt)} {second.output()}")
    finally:
        second.stop()
    status = queue.status(gw.rt)
    assert (status["done"], status["dead"], status["pending"]) == (5000, 0, 0), second.output()
    assert len(fake_zoho.records["Contacts"]) == 5000
    assert fake_zoho.max_in_flight <= 3
    assert fake_zoho.calls["429 TOO_MANY_REQUESTS"] == 0
