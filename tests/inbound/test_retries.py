"""Zoho's retries: a delivery sent again after a later change at the same (minute-precision)
modified_time is a duplicate, never a roll-back, whether it arrives live or waits in the inbox."""
from __future__ import annotations

import datetime as dt
import time

from gateway.inbound import reapply, reports
from tests.inbound.conftest import Gateway
from gateway.state import tables

# Zoho's workflow merge field gives minute precision: several changes share one modified_time.
MINUTE = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1)).strftime("%d/%m/%Y %H:%M")
BASE = int(time.time()) - 3600


def zt(offset: int = 0) -> str:
    return str((BASE + offset) * 1000)


def _zoho_history(gw, orders_id: int) -> list[str]:
    return [c for _sid, c, _at in gw.history(orders_id) if c.startswith("Zoho CRM")]


def _reapply_until_settled(rt, passes: int = 10) -> list[dict]:
    """Run re-apply passes as the background task would, with every backoff already over."""
    results = []
    for _ in range(passes):
        with rt.store.begin() as conn:
            conn.execute(tables.inbox_table.update().where(tables.inbox_table.c.state == "pending").values(next_attempt_at=0))
        results.append(reapply.reapply_pending(rt))
        if not reports.pending_count(rt):
            break
    return results


# -- 1. a retry of an earlier delivery with the same modified_time -------------------------------------
def test_a_zoho_retry_after_a_later_change_in_the_same_minute_is_a_duplicate(make_app, ops_db_url, state_db_url):
    gw = Gateway(make_app(OPS_DATABASE_URL=ops_db_url, DATABASE_URL=state_db_url))
    printing = {"id": "9401", "ops_id": "1", "stage": "Printing", "modified_time": MINUTE}
    shipped = {"id": "9401", "stage": "Shipped", "modified_time": MINUTE}
    assert gw.post("deals", printing).get_json() == {"status": "applied"}
    assert gw.post("deals", shipped).get_json() == {"status": "applied"}
    before = gw.snapshot()
    for retry in (printing, shipped):  # Zoho retries both (it lost our answers)
        r = gw.post("deals", retry)
        assert r.status_code == 200 and r.get_json() == {"status": "duplicate"}
    assert gw.snapshot() == before
    assert gw.order(1)["orders_status_id"] == 4  # still Shipped, not rolled back to Printing
    assert _zoho_history(gw, 1) == ["Zoho CRM: Deal 9401 moved to stage Printing",
                                    "Zoho CRM: Deal 9401 moved to stage Shipped"]
    # the same minute with values not seen before is still applied, in the order received
    r = gw.post("deals", {"id": "9401", "stage": "Order Completed", "modified_time": MINUTE})
    assert r.get_json() == {"status": "applied"} and gw.order(1)["orders_status_id"] == 5


def test_a_retry_waiting_in_the_inbox_is_a_duplicate_when_its_turn_comes(make_app, state_db_url):
    gw = Gateway(make_app(DATABASE_URL=state_db_url))
    printing = {"id": "9402", "ops_id": "2", "stage": "Printing", "modified_time": MINUTE}
    shipped = {"id": "9402", "ops_id": "2", "stage": "Shipped", "modified_time": MINUTE}
    gw.rt.ops.mark_unavailable(600)  # OnPrintShop away: all three are stored for later
    for params in (printing, shipped, printing):
        assert gw.post("deals", params).status_code == 202
    gw.rt.ops._unavailable_until = 0.0  # it is back
    _reapply_until_settled(gw.rt)
    assert [row["outcome"] for row in reversed(reports.recent(gw.rt))] == ["applied", "applied", "duplicate"]
    assert gw.order(2)["orders_status_id"] == 4
    assert len(_zoho_history(gw, 2)) == 2
