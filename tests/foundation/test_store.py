"""The state store on every supported database: idempotent init-db, leases, settings."""
import threading

import sqlalchemy as sa

from gateway.state import Store, new_holder_id
from gateway.state.migrate import init_db


def test_init_db_is_idempotent_and_leases_are_exclusive(state_db_url):
    store = Store(state_db_url)
    try:
        init_db(store)
        init_db(store)  # a second release must not fail
        a, b = new_holder_id(), new_holder_id()
        assert store.try_lease("refresh", a, 30)
        assert not store.try_lease("refresh", b, 30)
        assert store.try_lease("refresh", a, 30)  # the holder may extend it
        store.release_lease("refresh", a)
        assert store.try_lease("refresh", b, 30)
        assert store.try_lease("lapsed", a, -1)
        assert store.try_lease("lapsed", b, 30)  # a lapsed lease is taken over
        store.set_setting("zoho.modules", ["contacts", "deals"])
        store.set_setting("zoho.modules", ["contacts"])
        assert store.get_setting("zoho.modules") == ["contacts"]
        assert store.get_setting("missing", "default") == "default"
    finally:
        store.dispose()


def test_one_lease_winner_among_many_threads(state_db_url):
    store = Store(state_db_url)
    try:
        init_db(store)
        winners = []
        barrier = threading.Barrier(8)

        def contend():
            holder = new_holder_id()
            barrier.wait()
            if store.try_lease("poller", holder, 60):
                winners.append(holder)

        threads = [threading.Thread(target=contend) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(winners) == 1
    finally:
        store.dispose()


def test_health_and_readiness(client):
    assert client.get("/healthz").json == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json["state_store"] == "ok"


def test_readiness_when_the_state_store_is_down_keeps_the_contract_values(make_app, tmp_path):
    app = make_app()
    rt = app.extensions["gateway"]
    rt.store.engine = sa.create_engine(f"sqlite:///{tmp_path}/no-such-folder/gateway.db")  # cannot be opened
    ready = app.test_client().get("/readyz")
    assert ready.status_code == 503
    body = ready.get_json()
    assert body["status"] == "unavailable" and body["state_store"] == "unavailable: OperationalError"
    assert body["zoho"] in ("connected", "needs_reauthorization", "not_configured")  # only the three values docs/operations.md names
    assert body["zoho"] == "not_configured" and body["zoho_error"] == "OperationalError"
    assert body["ops_database"] == "ok"
