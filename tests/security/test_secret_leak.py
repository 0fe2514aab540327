"""A leaked webhook or events secret can be cut off at once: rotate, then end the old secrets' grace."""
from __future__ import annotations

import json
import time

from gateway import audit
from gateway.inbound import secrets
from gateway.outbound import events
from tests.conftest import logged_in
from tests.inbound.conftest import Gateway


def _signed_post(client, secret, webhook_id):
    raw = json.dumps({"type": "order.updated", "id": 1}).encode()
    stamp = str(int(time.time()))
    return client.post("/api/v1/events", data=raw, headers={
        "Content-Type": "application/json", "webhook-id": webhook_id, "webhook-timestamp": stamp,
        "webhook-signature": events.sign(secret, webhook_id, stamp, raw)})


def test_webhook_secret_revoke_previous_ends_every_old_secrets_grace(make_app):
    gw = Gateway(make_app())
    runner = gw.app.test_cli_runner()
    original = gw.secret
    for _ in range(3):
        assert runner.invoke(args=["webhook-secret", "--rotate"]).exit_code == 0
    assert gw.post("deals", {"id": "9801", "ops_id": "1", "payment_status": "Paid"}, token=original).status_code == 200
    result = runner.invoke(args=["webhook-secret", "--revoke-previous"])
    assert result.exit_code == 0, result.output
    current = secrets.webhook_secrets(gw.rt)["current"]
    assert f"secret {current}" in result.output and "ended the grace of 3 previous secrets" in result.output
    refused = gw.post("deals", {"id": "9801", "ops_id": "1", "payment_status": "Unpaid"}, token=original)
    assert refused.status_code == 401
    assert gw.post("deals", {"id": "9801", "ops_id": "1", "payment_status": "Unpaid"}, token=current).status_code == 200
    assert secrets.webhook_secrets(gw.rt)["previous_all"] == []
    assert any(row["action"] == "end webhook secrets' grace" for row in audit.recent(gw.rt))


def test_the_page_ends_the_old_events_and_webhook_secrets_grace(make_app):
    app = make_app()
    rt = app.extensions["gateway"]
    admin = logged_in(app)
    original = events.events_secret(rt)
    for _ in range(3):
        assert admin.post("/admin/secrets/events/rotate", {}).status_code == 302
    assert _signed_post(app.test_client(), original, "before").status_code == 202
    page = admin.client.get("/admin/").get_data(as_text=True)
    assert "End the old secrets&#39; grace now" in page or "End the old secrets' grace now" in page
    answer = admin.post("/admin/secrets/events/revoke-previous", {}, follow_redirects=True)
    assert "The grace of 3 previous events secrets ended now" in answer.get_data(as_text=True)
    assert _signed_post(app.test_client(), original, "after").status_code == 401
    assert _signed_post(app.test_client(), events.events_secret(rt), "current").status_code == 202
    assert any(row["action"] == "end events secrets' grace" and row["detail"] == "events: 3 ended"
               for row in audit.recent(rt))

    webhook_original = secrets.webhook_secrets(rt)["current"]
    admin.post("/admin/secrets/webhook/rotate", {})
    admin.post("/admin/secrets/webhook/revoke-previous", {})
    assert not secrets.check_webhook_token(rt, webhook_original)
    assert secrets.check_webhook_token(rt, secrets.webhook_secrets(rt)["current"])


def test_ending_the_grace_needs_the_admin_and_the_form_token(make_app):
    app = make_app(WTF_CSRF_ENABLED=True)
    anonymous = app.test_client().post("/admin/secrets/webhook/revoke-previous")
    assert anonymous.status_code in (302, 400)
    admin = logged_in(app)
    assert admin.client.post("/admin/secrets/webhook/revoke-previous", data={}).status_code == 400  # no CSRF token
