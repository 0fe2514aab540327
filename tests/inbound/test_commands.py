"""`inbox status [--json]` and `inbox retry-failed`: what an operator runs on a one-off dyno when
the admin page says updates from Zoho are waiting or were refused."""
from __future__ import annotations

import json

from gateway import audit
from gateway.inbound import inbox
from tests.inbound.conftest import Gateway
from tests.inbound.test_refusals import _allow_order_3, _refuse_order_3, zt
from tests.inbound.test_retries import _reapply_until_settled


def test_status_and_retry_failed_bring_a_refused_update_into_onprintshop(make_app, ops_db_url, state_db_url, monkeypatch):
    monkeypatch.setattr(inbox, "MAX_ATTEMPTS", 2)
    gw = Gateway(make_app(OPS_DATABASE_URL=ops_db_url, DATABASE_URL=state_db_url))
    runner = gw.app.test_cli_runner()

    quiet = json.loads(runner.invoke(args=["inbox", "status", "--json"]).output)
    assert quiet == {"pending": 0, "failed": 0, "oldest_pending_seconds": None, "last_error": None}
    assert runner.invoke(args=["inbox", "retry-failed"]).output == "put 0 failed deliveries back in line\n"

    _refuse_order_3(gw)
    try:
        assert gw.post("deals", {"id": "9501", "ops_id": "3", "stage": "Shipped", "modified_time": zt()}).status_code == 202
        waiting = json.loads(runner.invoke(args=["inbox", "status", "--json"]).output)
        assert waiting["pending"] == 1 and waiting["failed"] == 0 and waiting["oldest_pending_seconds"] >= 0
        assert "the OnPrintShop database refused the change" in waiting["last_error"]
        _reapply_until_settled(gw.rt)
    finally:
        _allow_order_3(gw)

    text = runner.invoke(args=["inbox", "status"]).output.splitlines()
    assert text[:3] == ["pending: 0", "failed: 1", "oldest pending: none"]
    assert text[3].startswith("last error: gave up after 2 attempts")
    assert gw.order(3)["orders_status_id"] != 4  # nothing written while OnPrintShop refused

    result = runner.invoke(args=["inbox", "retry-failed"])
    assert result.exit_code == 0 and result.output == "put 1 failed delivery back in line\n"
    assert json.loads(runner.invoke(args=["inbox", "status", "--json"]).output)["pending"] == 1
    _reapply_until_settled(gw.rt)
    assert gw.order(3)["orders_status_id"] == 4  # Shipped, now that the cause is gone
    assert json.loads(runner.invoke(args=["inbox", "status", "--json"]).output)["failed"] == 0
    assert ("command line", "retry failed deliveries", "1 delivery") in [
        (row["who"], row["action"], row["detail"]) for row in audit.recent(gw.rt, 5)
    ]


def test_inbox_commands_before_init_db_say_so_in_one_line(tmp_path):
    from tests.foundation.test_hardening import _flask

    for args in (["inbox", "status"], ["inbox", "retry-failed"]):
        result = _flask(tmp_path, *args, env={"DATABASE_URL": f"sqlite:///{tmp_path}/empty.db"})
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.returncode != 0 and "Traceback" not in result.stderr
        assert len(lines) == 1 and "run `flask --app wsgi init-db` first" in lines[0], result.stderr
