"""The deployment-wide Zoho gate: concurrency slots shared by every process, the daily budget."""
from __future__ import annotations

import threading
import time

import pytest
import sqlalchemy as sa

from gateway.state import Store
from gateway.state.migrate import init_db
from gateway.state.tables import permits_table
from gateway.zoho import gate
from gateway.zoho.errors import BudgetExhausted


@pytest.fixture
def store(state_db_url):
    store = Store(state_db_url)
    init_db(store)
    yield store
    store.dispose()


def test_two_gates_on_one_store_hold_the_cap_together(store):
    gates = [gate.Gate(store, concurrency=2, budget=None), gate.Gate(store, concurrency=2, budget=None)]
    in_flight = 0
    most = 0
    lock = threading.Lock()

    def call(g):
        nonlocal in_flight, most
        for _ in range(4):
            with g.call():
                with lock:
                    in_flight += 1
                    most = max(most, in_flight)
                time.sleep(0.02)
                with lock:
                    in_flight -= 1

    threads = [threading.Thread(target=call, args=(g,)) for g in gates for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert most == 2
    assert gate.count_last_day(store, "calls") == 24
    assert gates[0].in_use() == 0


def test_a_slot_of_a_killed_process_lapses(store, monkeypatch):
    monkeypatch.setattr(gate, "SLOT_LEASE_SECONDS", 0.2)
    killed = gate.Gate(store, concurrency=1, budget=None)
    call = killed.call()
    call.__enter__()  # the process dies holding its slot: nobody hands it back
    with store.engine.connect() as conn:
        lapses_at = conn.execute(sa.select(permits_table.c.free_at).where(
            permits_table.c.limiter == killed.limiter.name, permits_table.c.slot == 0)).scalar()
    started = time.monotonic()
    with gate.Gate(store, concurrency=1, budget=None).call():
        entered = time.time()
        waited = time.monotonic() - started
    assert entered >= lapses_at  # the slot was taken only once the dead process's lease had lapsed
    assert waited < 5


def test_the_daily_budget_refuses_calls_before_sending(store):
    g = gate.Gate(store, concurrency=3, budget=3)
    for _ in range(3):
        with g.call():
            pass
    with pytest.raises(BudgetExhausted, match="GATEWAY_DAILY_CALL_BUDGET"):
        with g.call():
            raise AssertionError("a call past the budget must not run")
    assert gate.count_last_day(store, "calls") == 3
    frees = gate.budget_frees_at(store, 3)
    assert time.time() + 86400 - gate.BUCKET_SECONDS <= frees <= time.time() + 86400 + gate.BUCKET_SECONDS


def test_a_call_zoho_never_answered_keeps_its_slot_until_it_could_have_ended(gw_sqlite, monkeypatch):
    """A timed-out (or killed) call may still be running at Zoho: its slot is not reused at once."""
    from gateway.zoho.errors import Unavailable

    gw = gw_sqlite
    monkeypatch.setattr(gate, "SLOT_LEASE_SECONDS", 3.0)
    gw.rt.config["GATEWAY_ZOHO_CONCURRENCY"] = 1
    gw.fake.concurrency_limit = 1
    gw.fake.latency = 1.5  # Zoho works on each call this long, whether or not the caller still waits
    with pytest.raises(Unavailable, match="timeout"):
        gw.rt.zoho.request("POST", "/crm/v8/Contacts/upsert", json={"data": [{"Last_Name": "A"}]}, timeout=0.3)
    started = time.monotonic()
    response = gw.rt.zoho.request("POST", "/crm/v8/Contacts/upsert", json={"data": [{"Last_Name": "B"}]})
    assert response.status_code == 200, response.text
    assert gw.fake.calls["429 TOO_MANY_REQUESTS"] == 0
    assert gw.fake.max_in_flight == 1
    assert time.monotonic() - started >= 3.0 - 0.3 - 0.2  # it waited for the first call's slot to lapse
