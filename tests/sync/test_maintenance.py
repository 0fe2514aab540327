"""Retention: rows older than GATEWAY_RETENTION_DAYS go, recent ones stay, one purger at a time."""
from __future__ import annotations

import json
import threading
import time

from gateway import maintenance
from gateway.inbound import catchup, notify, notify_pending, reports
from gateway.outbound import events, queue, worker
from tests.sync.conftest import link

DAY = 86400


class OneRound(threading.Event):
    def wait(self, timeout=None):
        self.set()
        return True


def fill(app, fake_zoho):
    """An applied inbox row, two finished push jobs and one notification waiting for Zoho."""
    rt = app.extensions["gateway"]
    link(app, "Deals", 1, "5725767000000200001")
    fake_zoho.put_record("Deals", "5725767000000200001", Stage="Printing")
    assert catchup.catch_up(rt, since=fake_zoho.now() - 60, now=fake_zoho.now())["applied"] == 1
    queue.enqueue(rt, "Contacts", [2, 3])
    worker.drain(rt)
    assert queue.status(rt)["done"] == 2
    with app.app_context():
        assert notify.set_enabled(rt, True).ok
    channel = rt.store.get_setting(notify.CHANNEL_SETTING)
    with rt.store.begin() as conn:
        token = rt.vault.get(conn, notify.TOKEN_SECRET)
    fake_zoho.api_down = True
    answer = app.test_client().post("/webhooks/zoho/notify", content_type="application/json", data=json.dumps(
        {"module": "Deals", "ids": ["5725767000000200002"], "operation": "update",
         "channel_id": channel["channel_id"], "token": token}))
    assert answer.status_code == 202
    fake_zoho.api_down = False
    assert events.remember_id(rt, "msg_retention_test")
    return rt


def test_old_rows_are_purged_and_recent_ones_kept(sync_app, fake_zoho):
    app = sync_app(GATEWAY_RETENTION_DAYS=7)
    rt = fill(app, fake_zoho)
    kept = maintenance.purge(rt, now=time.time() + 6 * DAY)
    assert (kept["inbox"], kept["jobs"], kept["event_ids"]) == (0, 0, 0)
    assert len(reports.recent(rt)) == 1 and queue.status(rt)["done"] == 2 and notify_pending.pending_count(rt) == 1

    purged = maintenance.purge(rt, now=time.time() + 8 * DAY)
    assert (purged["inbox"], purged["jobs"], purged["event_ids"]) == (1, 2, 1)
    assert events.remember_id(rt, "msg_retention_test")  # forgotten: accepted as new again
    assert reports.recent(rt) == [] and queue.status(rt)["done"] == 0
    assert notify_pending.pending_count(rt) == 1  # not yet fetched from Zoho: work still to do is never purged


def test_only_one_process_purges_at_a_time(sync_app, fake_zoho):
    app = sync_app(GATEWAY_RETENTION_DAYS=0)  # everything finished is old at once
    rt = fill(app, fake_zoho)
    assert rt.store.try_lease(maintenance.LEASE, "another-process", 600)
    maintenance.run(rt, OneRound())
    assert queue.status(rt)["done"] == 2 and rt.store.get_setting(maintenance.LAST_PURGE_SETTING) is None
    rt.store.release_lease(maintenance.LEASE, "another-process")
    time.sleep(0.01)  # a clock tick, not a wait for other work: the cut-off ("now", 0 days) must pass the rows
    maintenance.run(rt, OneRound())
    assert queue.status(rt)["done"] == 0 and reports.recent(rt) == []
    assert rt.store.get_setting(maintenance.LAST_PURGE_SETTING)["counts"]["jobs"] == 2


def test_a_part_that_fails_is_logged_and_the_others_are_still_purged(app, gateway_logs, monkeypatch):
    def broken(_rt, _older_than):
        raise RuntimeError("the ghosts table is gone")

    monkeypatch.setattr(maintenance, "PARTS", (("ghosts", broken),) + maintenance.PARTS)
    rt = app.extensions["gateway"]
    from gateway import audit

    audit.record(rt, "admin@127.0.0.1", "login", "logged in")
    purged = maintenance.purge(rt, now=time.time() + rt.config["GATEWAY_RETENTION_DAYS"] * DAY + 60)
    assert "ghosts" not in purged and purged["audit"] == 1
    assert "retention: purging ghosts failed" in gateway_logs()


def test_the_admin_audit_trail_is_purged_with_the_same_retention(app):
    from gateway import audit

    rt = app.extensions["gateway"]
    audit.record(rt, "admin@127.0.0.1", "login", "logged in")
    kept = maintenance.purge(rt, now=time.time() + rt.config["GATEWAY_RETENTION_DAYS"] * DAY - 60)
    assert kept["audit"] == 0 and len(audit.recent(rt)) == 1
    purged = maintenance.purge(rt, now=time.time() + rt.config["GATEWAY_RETENTION_DAYS"] * DAY + 60)
    assert purged["audit"] == 1 and audit.recent(rt) == []
