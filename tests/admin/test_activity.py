"""The status page's activity chart: per hour over the last 24 hours, what was pushed to Zoho and what
Zoho delivered, failures and dead jobs marked; drawn on the server, with nothing the CSP blocks."""
from __future__ import annotations

import re

import pytest

from gateway.admin import activity
from gateway.admin.activity import Hour
from gateway.inbound import secrets
from gateway.ops.database import demo
from gateway.outbound import push, worker
from gateway.state.tables import inbox_table
from gateway.zoho import connect, gate
from tests.conftest import logged_in, make_dead_job, rt_of

NOW = 1_800_000_000.0  # a whole hour: 2027-01-15 08:00 UTC


def quiet(start, **counts) -> Hour:
    values = dict(pushed=0, failed=0, dead=0, applied=0, skipped=0, waiting=0, refused=0)
    values.update(counts)
    return Hour(start, **values)


def test_the_chart_scales_to_the_busiest_hour_and_marks_failures_and_dead_jobs():
    hours = [quiet(3600.0 * i) for i in range(24)]
    hours[20] = quiet(3600.0 * 20, pushed=8, failed=1, dead=1)
    hours[23] = quiet(3600.0 * 23, applied=3, skipped=1, refused=1)
    drawn = activity.chart(hours)
    assert drawn["peak"] == 10 and drawn["totals"]["pushed"] == 8 and drawn["totals"]["delivered"] == 5
    busy = drawn["hours"][20]
    assert [b["kind"] for b in busy["bars"]] == ["push", "failed", "dead"]
    assert sum(b["height"] for b in busy["bars"]) == pytest.approx(activity.PLOT_HEIGHT)  # the tallest bar fills the plot
    assert busy["dead_mark"] is not None and drawn["hours"][23]["dead_mark"] is None
    assert [b["kind"] for b in drawn["hours"][23]["bars"]] == ["delivery", "failed"]
    assert drawn["hours"][0]["bars"] == []
    assert busy["title"] == ("20:00–21:00 UTC: 8 pushed, 1 failed, 1 dead; 0 deliveries from Zoho: 0 applied, "
                             "0 duplicate or stale, 0 waiting, 0 refused")
    assert drawn["labels"] == ["00:00", "06:00", "12:00", "18:00"]
    assert [h.start for h in drawn["rows"]] == [3600.0 * 20, 3600.0 * 23]


def test_a_single_record_still_shows_as_a_visible_bar():
    hours = [quiet(0.0, pushed=1000), quiet(3600.0, pushed=1)] + [quiet(3600.0 * i) for i in range(2, 24)]
    assert activity.chart(hours)["hours"][1]["bars"][0]["height"] == 2.0


def test_hourly_counts_fall_in_their_clock_hour(make_app, state_db_url):
    rt = rt_of(make_app(DATABASE_URL=state_db_url))
    gate.add_count(rt.store, "pushes", 4, now=NOW - 3600)       # the previous hour
    gate.add_count(rt.store, "pushes", 2, now=NOW + 1799)       # this hour, its third bucket
    gate.add_count(rt.store, "push_dead", 1, now=NOW + 1)
    gate.add_count(rt.store, "pushes", 9, now=NOW - 24 * 3600)  # just before the chart's first hour
    with rt.store.begin() as conn:
        for number, (when, state, outcome) in enumerate(((NOW - 3600 - 0.5, "done", "applied"), (NOW, "done", "stale"),
                                                         (NOW + 3599.5, "done", "conflict"), (NOW + 10, "pending", None))):
            conn.execute(inbox_table.insert().values(
                received_at=when, source="webhook", module="Deals", zoho_id=str(number), modified_time=when, time_given=True,
                fields="{}", fingerprint=str(number), state=state, outcome=outcome, attempts=0, next_attempt_at=0.0))
    rows = {h.start - NOW: h for h in activity.last_day(rt, now=NOW + 1800)["rows"]}
    assert sorted(rows) == [-7200, -3600, 0]
    assert rows[-7200] == quiet(NOW - 7200, applied=1)  # 6:59:59.5 is in the 6 o'clock hour
    assert rows[-3600] == quiet(NOW - 3600, pushed=4)
    assert rows[0] == quiet(NOW, pushed=2, dead=1, skipped=1, waiting=1, refused=1)


def test_the_status_page_draws_the_pushes_and_deliveries_with_failures_marked(make_app, fake_zoho, zoho_settings):
    app = make_app(**zoho_settings)
    rt = rt_of(app)
    demo.create_if_absent(rt.ops)
    client_id, secret = fake_zoho.add_client()
    assert connect.configure(rt, data_center="us", client_id=client_id, client_secret=secret,
                             grant_token=fake_zoho.new_grant_code(client_id), account_id=fake_zoho.add_account()).ok
    fake_zoho.invalid_values[("Deals", "Stage")] = {"Cancelled"}  # Zoho's picklist lacks it: order 6 is refused
    push.enqueue_records(rt, "Contacts", rt.ops.all_ids("customers"))
    push.enqueue_records(rt, "Deals", rt.ops.all_ids("orders"))
    worker.drain(rt)
    make_dead_job(rt, "Contacts", 99, "not counted: buried by hand, not by a push")
    token = secrets.webhook_secrets(rt)["current"]
    deal = next(r for r in fake_zoho.records["Deals"].values() if r["Deal_Name"] == "OPS Order #1")
    for params in ({"id": deal["id"], "stage": "Printing"}, {"id": "5725767999999999999", "stage": "Printing"}):
        app.test_client().post("/webhooks/zoho/deals", data=params, headers={"X-Webhook-Token": token})

    text = logged_in(app).client.get("/admin/").get_data(as_text=True)
    chart = re.search(r'<section id="activity".*?</section>', text, re.S).group(0)
    totals = " ".join(re.sub(r"<[^>]+>", " ", re.search(r'<p class="activity-totals".*?</p>', chart, re.S).group(0)).split())
    assert totals == "9 records pushed to Zoho, 1 dead · 2 deliveries from Zoho: 1 applied, 1 refused"
    assert chart.count('class="bar bar-push"') == 1 and chart.count('class="bar bar-dead"') == 1
    assert chart.count('class="dead-mark"') == 1 and chart.count('class="bar bar-delivery"') == 1
    assert chart.count('class="bar bar-failed"') == 1  # the refused delivery
    assert "<script" not in text and not re.search(r"\sstyle=", text) and "<style" not in text
