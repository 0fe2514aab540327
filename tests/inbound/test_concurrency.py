"""Concurrent deliveries for the same records: no lost update, no error, last writer wins."""
from __future__ import annotations

import threading
import time

from gateway.inbound import reapply, reports
from gateway.ops.database import demo
from tests.inbound.conftest import Gateway

STAGES = [name for _sid, name in demo.DEMO_STATUSES]


def test_concurrent_deliveries_end_in_the_newest_state(make_app, ops_db_url, state_db_url):
    gw = Gateway(make_app(OPS_DATABASE_URL=ops_db_url, DATABASE_URL=state_db_url))
    base_ms = (int(time.time()) - 600) * 1000
    # 4 threads × 12 updates over 2 new Deals (first deliveries of a record race too), each distinct.
    jobs = [[] for _ in range(4)]
    for n in range(48):
        order = 1 + n % 2
        jobs[n % 4].append({"id": f"88{order}", "ops_id": str(order), "stage": STAGES[n % len(STAGES)],
                            "modified_time": str(base_ms + n * 1000)})
    answers: list[int] = []
    errors: list[BaseException] = []

    def send(batch):
        client = gw.app.test_client()
        try:
            for params in batch:
                r = client.post("/webhooks/zoho/deals", data=params, headers={"X-Webhook-Token": gw.secret})
                answers.append(r.status_code)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(batch,)) for batch in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert len(answers) == 48 and set(answers) <= {200, 202}, answers
    reapply.reapply_pending(gw.rt)
    assert reports.pending_count(gw.rt) == 0
    outcomes = [row["outcome"] for row in reports.recent(gw.rt, limit=100)]
    assert set(outcomes) <= {"applied", "stale"} and len(outcomes) == 48
    for order in (1, 2):
        newest = max((p for batch in jobs for p in batch if p["ops_id"] == str(order)), key=lambda p: int(p["modified_time"]))
        status_name = gw.query("SELECT s.orders_status_name FROM orders o JOIN orders_status s ON "
                               "s.orders_status_id = o.orders_status_id WHERE o.orders_id = :o", o=order)[0][0]
        assert status_name == newest["stage"]
