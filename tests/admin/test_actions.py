"""The page's queue actions as the admin uses them: see a dead job and retry it, retry all,
push one customer or order now; each leaves a message and an audit row."""
from __future__ import annotations

import html
import re

import pytest

from gateway import audit
from gateway.ops.database import demo
from gateway.outbound import pause, queue
from tests.conftest import AdminSession, logged_in, make_dead_job, rt_of


@pytest.fixture
def page_app(make_app, state_db_url):
    app = make_app(DATABASE_URL=state_db_url)
    demo.create_if_absent(app.extensions["gateway"].ops)
    return app


@pytest.fixture
def admin(page_app):
    return logged_in(page_app)


def page_text(admin):
    response = admin.client.get("/admin/")
    assert response.status_code == 200
    return response.get_data(as_text=True)


def flashes(text):
    return [html.unescape(m) for m in re.findall(r'<p class="flash flash-\w+"[^>]*>(.*?)</p>', text, re.S)]


def test_a_dead_job_is_shown_with_its_error_and_can_be_retried(page_app, admin):
    job_id = make_dead_job(rt_of(page_app), "Contacts", 2, "Zoho said INVALID_DATA: Email is not valid")
    text = page_text(admin)
    assert "1 dead job" in text
    assert "Zoho said INVALID_DATA: Email is not valid" in text
    assert f"Retry job {job_id}" in text
    response = admin.post("/admin/jobs/retry", {"job_id": str(job_id)})
    assert response.status_code == 302
    text = page_text(admin)
    assert f"Job {job_id} is back in the queue; it will be sent shortly." in flashes(text)
    status = queue.status(rt_of(page_app))
    assert status["dead"] == 0 and status["pending"] == 1
    assert "No dead jobs" in text
    assert {"who": "admin@127.0.0.1", "action": "retry job", "detail": f"job {job_id}"}.items() <= \
        audit.recent(rt_of(page_app), 1)[0].items()
    # Pressing the same button again (a reload, a second tab) changes nothing and says so.
    admin.post("/admin/jobs/retry", {"job_id": str(job_id)})
    assert any("is not a dead job any more" in m for m in flashes(page_text(admin)))


def test_retry_all_moves_every_dead_job_back(page_app, admin):
    make_dead_job(rt_of(page_app), "Contacts", 1, "boom")
    make_dead_job(rt_of(page_app), "Deals", 3, "boom")
    admin.post("/admin/jobs/retry-all", {})
    assert "2 dead jobs back in the queue." in flashes(page_text(admin))
    assert queue.status(rt_of(page_app))["dead"] == 0
    admin.post("/admin/jobs/retry-all", {})
    assert "There were no dead jobs to retry." in flashes(page_text(admin))


def test_a_bad_job_id_is_refused_in_words(page_app, admin):
    refused = admin.post("/admin/jobs/retry", {"job_id": "abc"})
    assert refused.status_code == 400
    assert any(m.startswith("Nothing retried:") for m in flashes(refused.get_data(as_text=True)))


def test_push_one_order_now(page_app, admin):
    response = admin.post("/admin/push", {"kind": "orders", "record_id": "3"})
    assert response.status_code == 302
    assert "Order 3 is queued for Zoho; it will be sent shortly." in flashes(page_text(admin))
    assert queue.pending_ids(rt_of(page_app), "Deals", [3]) == {3}
    assert audit.recent(rt_of(page_app), 1)[0]["detail"] == "order 3"


def test_pushing_a_record_that_does_not_exist_queues_nothing(page_app, admin):
    admin.post("/admin/push", {"kind": "customers", "record_id": "99999"})
    assert "OnPrintShop has no customer with id 99999; nothing was queued." in flashes(page_text(admin))
    assert queue.status(rt_of(page_app))["pending"] == 0
    refused = admin.post("/admin/push", {"kind": "customers", "record_id": "-4"})
    assert refused.status_code == 400
    assert any(m.startswith("Nothing pushed:") for m in flashes(refused.get_data(as_text=True)))


def test_an_absurdly_long_id_is_a_clear_400_not_a_database_error(page_app, admin, gateway_logs):
    refused = admin.post("/admin/push", {"kind": "customers", "record_id": "1" * 23})
    assert refused.status_code == 400
    [message] = [m for m in flashes(refused.get_data(as_text=True)) if m.startswith("Nothing pushed:")]
    assert "whole numbers from 1 to 9223372036854775807" in message and "database" not in message
    assert queue.status(rt_of(page_app))["pending"] == 0 and "Traceback" not in gateway_logs()


def test_queue_card_shows_counts_and_a_pause(page_app, admin):
    queue.enqueue(rt_of(page_app), "Contacts", [1, 2])
    pause.pause(rt_of(page_app).store, "budget", "the daily Zoho call budget is spent; sending resumes in 3 h")
    text = page_text(admin)
    assert "<dt>Pending</dt><dd>2</dd>" in text
    assert "Paused" in text and "the daily Zoho call budget is spent" in text


def deliver(client, secret, module, **params):
    return client.post(f"/webhooks/zoho/{module}", data=params, headers={"X-Webhook-Token": secret})


def test_deliveries_from_zoho_are_listed_with_their_outcome(page_app, admin):
    from gateway.inbound import secrets

    secret = secrets.webhook_secrets(rt_of(page_app))["current"]
    client = page_app.test_client()
    body = dict(id="5725767000000600001", email="ada@example.com", first_name="Ada", last_name="King",
                modified_time="2026-11-27T08:00:00+00:00")
    assert deliver(client, secret, "contacts", **body).status_code == 200
    assert deliver(client, secret, "contacts", **body).get_json() == {"status": "duplicate"}
    assert deliver(client, secret, "contacts", id="5725767000000600002", email="nobody@example.com",
                   modified_time="2026-11-27T08:01:00+00:00").status_code == 404
    text = page_text(admin)
    rows = re.findall(r'<span class="outcome outcome-(\w+)">', text)
    assert rows == ["not_found", "duplicate", "applied"]
    assert "5725767000000600001" in text and "Nothing waiting" in text
    assert secret not in re.sub(r'<details class="secret">.*?</details>', "", text, flags=re.S)


def test_the_call_budget_is_shown_beside_the_calls_made(make_app):
    app = make_app(GATEWAY_DAILY_CALL_BUDGET=5000)
    admin = AdminSession(app, app.test_client())
    admin.login()
    text = page_text(admin)
    assert "<dt>Zoho API calls</dt>\n      <dd>0 of 5000 allowed (GATEWAY_DAILY_CALL_BUDGET)</dd>" in text


def test_failed_deliveries_are_shown_and_can_be_put_back_in_line(page_app, admin, monkeypatch):
    """OnPrintShop refused a Zoho update until it was given up; once the cause is fixed, the admin
    retries it from the page and it is written."""
    from gateway.inbound import inbox, reports
    from tests.inbound.conftest import Gateway
    from tests.inbound.test_refusals import _allow_order_3, _refuse_order_3, zt
    from tests.inbound.test_retries import _reapply_until_settled

    monkeypatch.setattr(inbox, "MAX_ATTEMPTS", 2)
    gw = Gateway(page_app)
    _refuse_order_3(gw)
    try:
        assert gw.post("deals", {"id": "9501", "ops_id": "3", "stage": "Shipped", "modified_time": zt()}).status_code == 202
        _reapply_until_settled(gw.rt)
    finally:
        _allow_order_3(gw)
    assert reports.failed_count(gw.rt) == 1
    text = page_text(admin)
    assert "1 update from Zoho refused by OnPrintShop: see the latest deliveries." in text
    assert "Retry failed deliveries" in text

    response = admin.post("/admin/deliveries/retry-failed", {})
    assert response.status_code == 302
    assert "1 failed delivery back in line" in " ".join(flashes(page_text(admin)))
    assert reports.failed_count(gw.rt) == 0 and reports.pending_count(gw.rt) == 1
    _reapply_until_settled(gw.rt)
    assert gw.order(3)["orders_status_id"] == 4  # Shipped: written once the cause was gone
    assert [row["outcome"] for row in reports.recent(gw.rt)] == ["applied"]
    assert ("retry failed deliveries", "1 delivery") in [(r["action"], r["detail"]) for r in audit.recent(rt_of(page_app), 5)]
