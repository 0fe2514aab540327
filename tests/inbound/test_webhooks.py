"""The Zoho webhooks end to end: every answer of docs/inbound.md and the OnPrintShop rows afterwards."""
from __future__ import annotations

import datetime as dt
import json
import time

import pytest
import sqlalchemy as sa

from gateway import timezones
from gateway.inbound import reapply, reports, secrets
from gateway.sync import loopguard
from gateway.sync.links import ops_id_for
from tests.inbound.conftest import Gateway
from gateway.state import tables

BASE = int(time.time()) - 3600  # an hour ago: after the demo rows' last change, before now


def zt(offset: int = 0) -> str:
    """A Zoho modified time, `YYYY-MM-DD HH:MM:SS` (GATEWAY_ZOHO_TIMEZONE is UTC here)."""
    return dt.datetime.fromtimestamp(BASE + offset, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def naive(offset: int = 0) -> dt.datetime:
    """The same moment as OnPrintShop stores it (OPS_TIMEZONE is UTC here)."""
    return dt.datetime.fromtimestamp(BASE + offset, dt.timezone.utc).replace(tzinfo=None)


def as_dt(value) -> dt.datetime:
    return value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value))


# -- applied -----------------------------------------------------------------------------------------
def test_contact_update_is_applied_by_ops_id_and_linked(gw):
    before = gw.customer(2)
    # found by ops_id: linked because its e-mail is the customer's
    r = gw.post("contacts", {"id": "5001", "ops_id": "2", "email": "GRACE@example.com", "first_name": "Grace B.",
                             "last_name": "Murray Hopper", "phone": "+1 555 0100", "modified_time": zt(), "unknown": "ignored"})
    assert r.status_code == 200 and r.get_json() == {"status": "applied"}
    after = gw.customer(2)
    assert after["customers_firstname"] == "Grace B." and after["customers_lastname"] == "Murray Hopper"
    assert after["customers_telephone"] == "+1 555 0100"
    assert after["customers_email_address"] == before["customers_email_address"]  # the same address, other case: untouched
    assert as_dt(after["last_modified"]) == naive()
    with gw.rt.store.engine.connect() as conn:
        assert ops_id_for(conn, "Contacts", "5001") == 2
        assert loopguard.written_by_gateway(conn, "customers", 2, after["last_modified"])
        assert not loopguard.written_by_gateway(conn, "customers", 2, naive(1))
    # the link now finds it without ops_id; an empty phone clears the column
    r = gw.post("contacts", {"id": "5001", "phone": "", "modified_time": zt(10)})
    assert r.get_json() == {"status": "applied"}
    assert gw.customer(2)["customers_telephone"] is None


def test_contact_found_by_email(gw):
    r = gw.post("contacts", {"id": "5002", "email": "chidi@example.ng", "last_name": "Okafor-Anagonye", "modified_time": zt()},
                as_json=True)
    assert r.status_code == 200, r.get_json()
    assert gw.customer(4)["customers_lastname"] == "Okafor-Anagonye"


def test_deal_stage_and_payment_status_applied_with_history_row(gw):
    r = gw.post("deals", {"id": "9001", "ops_id": "1", "stage": "Closed Won", "payment_status": "paid",
                          "modified_time": zt()})
    assert r.status_code == 200 and r.get_json() == {"status": "applied"}
    order = gw.order(1)
    assert order["orders_status_id"] == 5 and order["payment_status"] == "Paid"
    assert as_dt(order["last_modified"]) == naive()
    history = gw.history(1)
    assert len(history) == 2
    status_id, comments, date_added = history[-1]
    assert status_id == 5 and "Zoho" in comments and "Order Completed" in comments and "9001" in comments
    # payment status alone: no new history row
    r = gw.post("deals", {"id": "9001", "payment_status": "Unpaid", "modified_time": zt(5)}, as_json=True)
    assert r.get_json() == {"status": "applied"}
    assert gw.order(1)["payment_status"] == "Unpaid" and len(gw.history(1)) == 2
    # stage matched case-insensitively
    r = gw.post("deals", {"id": "9001", "stage": "printing", "modified_time": zt(6)})
    assert r.get_json() == {"status": "applied"}
    assert gw.order(1)["orders_status_id"] == 3 and len(gw.history(1)) == 3


def test_every_modified_time_form_is_accepted(gw):
    moment = dt.datetime.fromtimestamp(BASE, dt.timezone.utc)
    forms = [
        moment.astimezone(dt.timezone(dt.timedelta(hours=5, minutes=30))).isoformat(),
        moment.strftime("%Y-%m-%d %H:%M:%S"),
        str(BASE * 1000),
    ]
    for number, form in enumerate(forms):
        r = gw.post("deals", {"id": "9100", "ops_id": "2", "payment_status": "Paid" if number % 2 else "Unpaid",
                              "modified_time": form})
        assert r.status_code == 200, (form, r.get_json())
    assert as_dt(gw.order(2)["last_modified"]) == naive()
    r = gw.post("deals", {"id": "9100", "stage": "Shipped",
                          "modified_time": (moment + dt.timedelta(minutes=1)).strftime("%d/%m/%Y %H:%M")})
    assert r.status_code == 200 and gw.order(2)["orders_status_id"] == 4


def test_time_of_receipt_when_modified_time_is_absent(gw):
    r = gw.post("contacts", {"id": "5003", "ops_id": "3", "email": "soren@example.dk", "first_name": "Søren A."})
    assert r.get_json() == {"status": "applied"}
    written = as_dt(gw.customer(3)["last_modified"])
    assert abs((written - dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)).total_seconds()) < 5


# -- duplicate and stale ----------------------------------------------------------------------------
def test_duplicate_changes_nothing(make_app, ops_db_url, state_db_url):
    gw = Gateway(make_app(OPS_DATABASE_URL=ops_db_url, DATABASE_URL=state_db_url))
    params = {"id": "9002", "ops_id": "1", "stage": "Shipped", "modified_time": zt()}
    assert gw.post("deals", params).get_json() == {"status": "applied"}
    before = gw.snapshot()
    r = gw.post("deals", params, as_json=True)
    assert r.status_code == 200 and r.get_json() == {"status": "duplicate"}
    assert gw.snapshot() == before


def test_older_after_newer_changes_nothing(make_app, ops_db_url, state_db_url):
    gw = Gateway(make_app(OPS_DATABASE_URL=ops_db_url, DATABASE_URL=state_db_url))
    assert gw.post("deals", {"id": "9003", "ops_id": "1", "stage": "Shipped", "modified_time": zt(60)}).status_code == 200
    before = gw.snapshot()
    r = gw.post("deals", {"id": "9003", "stage": "Printing", "payment_status": "Paid", "modified_time": zt(0)})
    assert r.status_code == 200 and r.get_json() == {"status": "stale"}
    assert gw.snapshot() == before
    assert gw.order(1)["orders_status_id"] == 4


def test_same_time_other_values_is_applied_in_order(gw):
    assert gw.post("deals", {"id": "9004", "ops_id": "1", "stage": "Shipped", "modified_time": zt()}).status_code == 200
    r = gw.post("deals", {"id": "9004", "stage": "Printing", "modified_time": zt()})
    assert r.get_json() == {"status": "applied"}
    assert gw.order(1)["orders_status_id"] == 3


def test_stale_against_the_rows_own_last_change_in_onprintshop(gw):
    later = naive(120)
    with gw.rt.ops.engine.begin() as conn:
        conn.execute(sa.text("UPDATE customers SET customers_firstname = 'Set in store', last_modified = :t "
                             "WHERE customers_id = 1"), {"t": later})
    before = gw.snapshot()
    r = gw.post("contacts", {"id": "5004", "ops_id": "1", "first_name": "From Zoho", "modified_time": zt(60)})
    assert r.status_code == 200 and r.get_json() == {"status": "stale"}
    assert gw.snapshot() == before
    r = gw.post("contacts", {"id": "5004", "first_name": "From Zoho", "modified_time": zt(180)})
    assert r.get_json() == {"status": "applied"}  # newer than the store's change: last writer wins
    assert gw.customer(1)["customers_firstname"] == "From Zoho"


# -- refusals ----------------------------------------------------------------------------------------
def test_not_found_is_404_and_changes_nothing(gw):
    before = gw.snapshot()
    for module, params in (
        ("contacts", {"id": "5005", "email": "nobody@example.com", "first_name": "X"}),
        ("contacts", {"id": "5005", "ops_id": "999", "first_name": "X"}),
        ("deals", {"id": "9005", "stage": "Shipped"}),
        ("deals", {"id": "9005", "ops_id": "999", "stage": "Shipped"}),
    ):
        r = gw.post(module, params)
        assert r.status_code == 404, r.get_json()
        body = r.get_json()
        assert body["status"] == "not_found" and "no OnPrintShop record" in body["error"]
    assert gw.snapshot() == before


def test_email_of_another_customer_is_409(make_app, ops_db_url):
    gw = Gateway(make_app(OPS_DATABASE_URL=ops_db_url, GATEWAY_WRITE_BACK_EMAIL=True))
    assert gw.post("contacts", {"id": "5006", "email": "grace@example.com"}).status_code == 200  # found by e-mail: linked
    before = gw.snapshot()
    r = gw.post("contacts", {"id": "5006", "email": "ADA@example.com", "first_name": "Grace"})
    assert r.status_code == 409
    assert r.get_json()["parameter"] == "email" and "another" in r.get_json()["error"]
    assert gw.snapshot() == before


def test_ops_id_linked_to_another_zoho_record_is_409(gw):
    assert gw.post("deals", {"id": "9006", "ops_id": "3", "payment_status": "Unpaid", "modified_time": zt()}).status_code == 200
    before = gw.snapshot()
    r = gw.post("deals", {"id": "9007", "ops_id": "3", "stage": "Cancelled", "modified_time": zt(1)})
    assert r.status_code == 409 and "9006" in r.get_json()["error"]
    assert gw.snapshot() == before


@pytest.mark.parametrize("module, params, parameter", [
    ("deals", {"id": "9008", "ops_id": "1", "stage": "Qualification"}, "stage"),
    ("deals", {"id": "9008", "ops_id": "1", "payment_status": "Refunded"}, "payment_status"),
    ("deals", {"id": "9008", "ops_id": "1", "stage": ""}, "stage"),
    ("contacts", {"id": "5008", "ops_id": "1", "email": "not an email"}, "email"),
    ("contacts", {"id": "5008", "ops_id": "1", "first_name": "x" * 65}, "first_name"),
    ("contacts", {"id": "5008", "ops_id": "1", "last_name": "Null\x00Byte"}, "last_name"),
    ("contacts", {"id": "5008", "ops_id": "1", "last_name": ""}, "last_name"),
    ("contacts", {"id": "5008", "ops_id": "x1", "first_name": "A"}, "ops_id"),
    ("contacts", {"ops_id": "1", "first_name": "A"}, "id"),
    ("contacts", {"id": "5008", "ops_id": "1", "modified_time": "next tuesday"}, "modified_time"),
])
def test_bad_values_are_422_naming_the_parameter(gw, module, params, parameter):
    before = gw.snapshot()
    for as_json in (False, True):
        r = gw.post(module, params, as_json=as_json)
        assert r.status_code == 422, r.get_json()
        assert r.get_json()["parameter"] == parameter and r.get_json()["error"]
    assert gw.snapshot() == before


def test_sql_looking_strings_and_unicode_names_are_stored_literally(make_app, ops_db_url):
    gw = Gateway(make_app(OPS_DATABASE_URL=ops_db_url, GATEWAY_WRITE_BACK_EMAIL=True))
    sneaky = "Robert'); DROP TABLE customers;--"
    assert gw.post("contacts", {"id": "5009", "email": "ada@example.com", "modified_time": zt(-10)}).status_code == 200
    r = gw.post("contacts", {"id": "5009", "first_name": "Zoë 😀 李小龍", "last_name": sneaky,
                             "email": "o'brien+tag@example.com", "modified_time": zt()}, as_json=True)
    assert r.status_code == 200, r.get_json()
    row = gw.customer(1)
    assert row["customers_firstname"] == "Zoë 😀 李小龍"
    assert row["customers_lastname"] == sneaky
    assert row["customers_email_address"] == "o'brien+tag@example.com"
    assert len(gw.query("SELECT customers_id FROM customers")) == 4


def test_bodies_over_64_kib_and_other_content_types(gw):
    before = gw.snapshot()
    big = {"id": "5010", "ops_id": "1", "first_name": "A", "padding": "x" * 70_000}
    r = gw.post("contacts", big)
    assert r.status_code == 413 and "64 KiB" in r.get_json()["error"]
    r = gw.post("contacts", big, as_json=True)
    assert r.status_code == 413
    r = gw.client.post("/webhooks/zoho/contacts", data="<id>1</id>", content_type="application/xml",
                       headers={"X-Webhook-Token": gw.secret})
    assert r.status_code == 415 and "form data" in r.get_json()["error"]
    assert gw.snapshot() == before  # refused bodies change nothing
    r = gw.client.post("/webhooks/zoho/deals", data=json.dumps({"id": "9011", "ops_id": "2", "stage": "Shipped"}),
                       content_type="text/plain", headers={"X-Webhook-Token": gw.secret})
    assert r.status_code == 200  # text/plain whose body is a JSON object
    assert gw.order(2)["orders_status_id"] == 4
    r = gw.client.post("/webhooks/zoho/deals", data="{broken", content_type="application/json",
                       headers={"X-Webhook-Token": gw.secret})
    assert r.status_code == 422 and r.get_json()["parameter"] == "body"
    assert gw.client.get("/webhooks/zoho/deals").get_json()["error"]
    assert gw.client.post("/webhooks/zoho/nothing").status_code == 404
    assert gw.client.post("/webhooks/zoho/nothing").is_json


# -- the secret ----------------------------------------------------------------------------------------
def test_wrong_or_missing_secret_changes_nothing(gw):
    before = gw.snapshot()
    params = {"id": "5011", "ops_id": "1", "first_name": "Mallory"}
    for token in (None, "", "wrong", gw.secret + "x", gw.secret[:-1]):
        r = gw.post("contacts", params, token=token)
        assert r.status_code == 401, token
        assert "secret" in r.get_json()["error"] and gw.secret not in r.get_data(as_text=True)
    r = gw.post("contacts", {**params, "token": "wrong"}, token=None)
    assert r.status_code == 401
    r = gw.client.post("/webhooks/zoho/contacts?token=wrong", data=params)
    assert r.status_code == 401
    assert gw.snapshot() == before
    assert reports.recent(gw.rt) == []  # nothing unauthenticated is even stored


def test_token_parameter_works_is_never_stored_and_masked_in_logs(gw_sqlite, gateway_logs):
    gw = gw_sqlite
    r = gw.client.post(f"/webhooks/zoho/contacts?token={gw.secret}", data={"id": "5012", "ops_id": "1", "email": "ada@example.com",
                                                                                  "first_name": "Q"})
    assert r.status_code == 200
    r = gw.post("deals", {"id": "9012", "ops_id": "1", "stage": "Shipped", "token": gw.secret}, token=None, as_json=True)
    assert r.status_code == 200
    with gw.rt.store.engine.connect() as conn:
        stored = json.dumps([list(row) for row in conn.execute(sa.select(tables.inbox_table)).all()])
    assert gw.secret not in stored and "token" not in stored
    logs = gateway_logs()
    assert "token=***" in logs and gw.secret not in logs


def test_previous_secret_works_within_grace_and_not_after(gw_sqlite, monkeypatch):
    gw = gw_sqlite
    old = gw.secret
    now = [time.time()]
    monkeypatch.setattr(secrets, "clock", lambda: now[0])
    new = secrets.rotate_webhook_secret(gw.rt)
    assert new != old and len(new) >= 32
    assert gw.post("deals", {"id": "9013", "ops_id": "1", "payment_status": "Paid"}, token=old).status_code == 200
    assert gw.post("deals", {"id": "9013", "ops_id": "1", "payment_status": "Unpaid"}, token=new).status_code == 200
    now[0] += 23 * 3600
    assert gw.post("deals", {"id": "9013", "payment_status": "Paid"}, token=old).status_code == 200
    now[0] += 2 * 3600
    before = gw.snapshot()
    assert gw.post("deals", {"id": "9013", "payment_status": "Unpaid"}, token=old).status_code == 401
    assert gw.snapshot() == before
    assert gw.post("deals", {"id": "9013", "payment_status": "Unpaid"}, token=new).status_code == 200
    assert secrets.webhook_secrets(gw.rt)["previous"] is None


def test_a_second_rotation_does_not_cut_short_the_first_ones_grace(gw_sqlite, monkeypatch):
    """The admin rotates, pastes the new secret into one Zoho webhook, and rotates again an hour
    later (or double-clicks): the secret each Zoho webhook still sends keeps working for its day."""
    gw = gw_sqlite
    first = gw.secret
    now = [time.time()]
    monkeypatch.setattr(secrets, "clock", lambda: now[0])
    second = secrets.rotate_webhook_secret(gw.rt)
    now[0] += 3600
    third = secrets.rotate_webhook_secret(gw.rt)
    for token in (first, second, third):
        assert gw.post("deals", {"id": "9014", "ops_id": "1", "payment_status": "Paid"}, token=token).status_code == 200
    shown = secrets.webhook_secrets(gw.rt)
    assert shown["current"] == third and shown["previous"] == second
    assert [old["secret"] for old in shown["previous_all"]] == [second, first]
    now[0] += 23 * 3600 + 60  # the first rotation's day is over, the second's is not
    assert gw.post("deals", {"id": "9014", "payment_status": "Unpaid"}, token=first).status_code == 401
    assert gw.post("deals", {"id": "9014", "payment_status": "Unpaid"}, token=second).status_code == 200
    assert [old["secret"] for old in secrets.webhook_secrets(gw.rt)["previous_all"]] == [second]


def test_a_previous_secret_stored_before_the_list_format_still_works(gw_sqlite, monkeypatch):
    """Deployments upgraded in the middle of a grace period keep their previous secret."""
    gw = gw_sqlite
    old = "an-older-secret-from-before-the-upgrade-0123456789"
    with gw.rt.store.begin() as conn:
        gw.rt.vault.put(conn, "webhook.secret.previous", old)
        gw.rt.store.set_setting("webhook.secret.previous_expires_at", time.time() + 3600, conn=conn)
    secrets._forget(gw.rt)
    assert gw.post("deals", {"id": "9015", "ops_id": "1", "payment_status": "Paid"}, token=old).status_code == 200
    newest = secrets.rotate_webhook_secret(gw.rt)
    kept = [entry["secret"] for entry in secrets.webhook_secrets(gw.rt)["previous_all"]]
    assert kept == [gw.secret, old] and newest not in kept


def test_secret_is_stored_encrypted(gw_sqlite):
    with gw_sqlite.rt.store.engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT token FROM gw_secrets")).scalars().all()
    assert stored and all(gw_sqlite.secret not in token for token in stored)


def test_webhook_secret_command(make_app):
    app = make_app(GATEWAY_PUBLIC_URL="https://gw.example.com/")
    runner = app.test_cli_runner()
    result = runner.invoke(args=["webhook-secret"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("secret ") and len(lines[0].split()[1]) >= 32
    assert lines[1:] == ["url https://gw.example.com/webhooks/zoho/contacts", "url https://gw.example.com/webhooks/zoho/deals"]
    first = lines[0].split()[1]
    assert runner.invoke(args=["webhook-secret"]).stdout.splitlines()[0] == f"secret {first}"
    rotated = runner.invoke(args=["webhook-secret", "--rotate"])
    second = rotated.stdout.splitlines()[0].split()[1]
    assert second != first
    rt = app.extensions["gateway"]
    assert secrets.check_webhook_token(rt, first) and secrets.check_webhook_token(rt, second)


# -- limits and failures of ours --------------------------------------------------------------------
def test_rate_limit_per_address_is_429_json(make_app):
    gw = Gateway(make_app(RATELIMIT_ENABLED=True, GATEWAY_WEBHOOK_RATE_LIMIT="3 per minute"))
    # Zoho's good deliveries are never counted: a burst of edits in Zoho is not refused
    codes = [gw.post("deals", {"id": "9014", "ops_id": "1", "payment_status": "Paid"}).status_code for _ in range(5)]
    assert codes == [200, 200, 200, 200, 200]
    # refused requests are: a wrong secret, a wrong secret in the body, a body too large (shared by both endpoints)
    assert gw.post("deals", {"id": "9014"}, token="guess-1").status_code == 401
    assert gw.post("contacts", {"id": "5014", "token": "guess-2"}, token=None).status_code == 401
    assert gw.client.post("/webhooks/zoho/deals", data=b"x" * (65 * 1024),
                          content_type="application/x-www-form-urlencoded").status_code == 413
    r = gw.post("contacts", {"id": "5014"}, token="guess-3")
    assert r.status_code == 429 and "too many" in r.get_json()["error"]
    # the same address's deliveries with the secret in the body wait out the limit with the guesser
    body_token = {"id": "5014", "ops_id": "1", "email": "ada@example.com", "first_name": "A", "token": gw.secret}
    assert gw.post("contacts", body_token, token=None).status_code == 429
    # ... but one with the right X-Webhook-Token header (or ?token=) is still taken: a guesser on
    # Zoho's shared outgoing addresses cannot get our real deliveries refused
    assert gw.post("contacts", {"id": "5014", "ops_id": "1", "email": "ada@example.com", "first_name": "A"}).status_code == 200
    assert gw.client.post(f"/webhooks/zoho/deals?token={gw.secret}",
                          data={"id": "9014", "ops_id": "1", "payment_status": "Unpaid"}).status_code == 200
    other = gw.client.post("/webhooks/zoho/deals", data={"id": "9014"},
                           headers={"X-Webhook-Token": "guess-4"}, environ_base={"REMOTE_ADDR": "10.9.8.7"})
    assert other.status_code == 401  # another address has its own count


def test_state_store_failure_is_503_json_with_request_id(gw_sqlite, gateway_logs):
    gw = gw_sqlite
    with gw.rt.store.engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE gw_inbox"))
    before = gw.snapshot()
    r = gw.post("deals", {"id": "9015", "ops_id": "1", "stage": "Shipped"})
    assert r.status_code == 503
    body = r.get_json()
    assert body["request_id"] and body["error"]
    assert body["request_id"] in gateway_logs()
    assert gw.snapshot() == before  # not stored, so not applied either: Zoho sees a failure


def test_unreachable_onprintshop_is_202_and_applied_later_in_order(make_app, tmp_path):
    missing = tmp_path / "not-yet"
    app = make_app(OPS_DATABASE_URL=f"sqlite:///{missing}/ops.db")
    rt = app.extensions["gateway"]
    from gateway.inbound import secrets as s

    secret = s.webhook_secrets(rt)["current"]
    client = app.test_client()
    stages = ["Order Processing", "Printing", "Shipped"]
    # sent out of order: the newest first
    for offset, stage in sorted(zip((0, 10, 20), stages, strict=True), reverse=True):
        r = client.post("/webhooks/zoho/deals", data={"id": "9016", "ops_id": "1", "stage": stage, "modified_time": zt(offset)},
                        headers={"X-Webhook-Token": secret})
        assert r.status_code == 202 and r.get_json() == {"status": "accepted"}
    assert reports.pending_count(rt) == 3
    assert [row["outcome"] for row in reports.recent(rt)] == ["accepted"] * 3

    # the database comes back; a new app object (a restart) applies what was accepted
    missing.mkdir()
    app2 = make_app(OPS_DATABASE_URL=f"sqlite:///{missing}/ops.db")
    gw2 = Gateway(app2)
    result = reapply.reapply_pending(gw2.rt)
    assert result["unavailable"] is False
    assert reports.pending_count(gw2.rt) == 0
    assert [c for _sid, c, _d in gw2.history(1)][1:] == [f"Zoho CRM: Deal 9016 moved to stage {s}" for s in stages]
    assert gw2.order(1)["orders_status_id"] == 4
    assert sorted(row["outcome"] for row in reports.recent(gw2.rt)) == ["applied"] * 3


def test_later_delivery_waits_behind_a_pending_one(gw_sqlite, monkeypatch):
    gw = gw_sqlite
    monkeypatch.setattr(gw.rt.ops, "recently_unavailable", lambda: True)
    assert gw.post("deals", {"id": "9017", "ops_id": "1", "stage": "Printing", "modified_time": zt(0)}).status_code == 202
    monkeypatch.undo()
    r = gw.post("deals", {"id": "9017", "stage": "Shipped", "modified_time": zt(10)})
    assert r.status_code == 202  # the earlier one goes first
    assert gw.order(1)["orders_status_id"] == 1
    reapply.reapply_pending(gw.rt)
    assert [sid for sid, _c, _d in gw.history(1)] == [1, 3, 4]


# -- reporting ----------------------------------------------------------------------------------------
def test_recent_pending_count_and_purge(gw_sqlite):
    gw = gw_sqlite
    gw.post("deals", {"id": "9018", "ops_id": "1", "stage": "Shipped", "modified_time": zt()})
    gw.post("deals", {"id": "9019", "stage": "Shipped"})
    rows = reports.recent(gw.rt, limit=10)
    assert [(r["zoho_id"], r["outcome"], r["source"]) for r in rows] == [("9019", "not_found", "webhook"),
                                                                        ("9018", "applied", "webhook")]
    assert rows[1]["ops_id"] == 1 and rows[0]["reason"]
    assert reports.pending_count(gw.rt) == 0
    assert reports.purge(gw.rt, time.time() - 60) == 0
    assert reports.purge(gw.rt, time.time() + 1) == 2
    assert reports.recent(gw.rt) == []


def test_month_first_dates_are_read_month_first_when_the_setting_says_so(make_app):
    gw = Gateway(make_app(GATEWAY_ZOHO_DATE_ORDER="mdy"))
    moment = dt.datetime.fromtimestamp(BASE - BASE % 60, dt.timezone.utc)
    us_style = moment.strftime("%m/%d/%Y %I:%M %p")  # e.g. 11/05/2026 09:05 AM
    r = gw.post("deals", {"id": "9200", "ops_id": "2", "stage": "Shipped", "modified_time": us_style})
    assert r.status_code == 200 and r.get_json() == {"status": "applied"}, (us_style, r.get_json())
    assert as_dt(gw.order(2)["last_modified"]) == moment.replace(tzinfo=None)
    # a day-first date no longer fits: refused with the setting named, not read some other way
    r = gw.post("deals", {"id": "9200", "stage": "Printing", "modified_time": "27/11/2026 10:15"})
    assert r.status_code == 422 and r.get_json()["parameter"] == "modified_time"
    assert "GATEWAY_ZOHO_DATE_ORDER" in r.get_json()["error"]


def test_a_modified_time_hours_ahead_is_refused_and_changes_nothing(gw_sqlite):
    gw = gw_sqlite
    before = gw.snapshot()
    ahead = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=2)  # a wrong GATEWAY_ZOHO_TIMEZONE
    r = gw.post("deals", {"id": "9300", "ops_id": "1", "stage": "Shipped",
                          "modified_time": ahead.strftime("%Y-%m-%d %H:%M:%S")})
    assert r.status_code == 422 and r.get_json()["parameter"] == "modified_time"
    assert "GATEWAY_ZOHO_TIMEZONE" in r.get_json()["error"]
    assert gw.snapshot() == before
    # a correct update a minute later is not blocked as stale
    r = gw.post("deals", {"id": "9300", "ops_id": "1", "stage": "Shipped", "modified_time": zt(60)})
    assert r.get_json() == {"status": "applied"}


def test_a_raw_utf8_form_body_is_applied(gw_sqlite):
    gw = gw_sqlite
    r = gw.client.post("/webhooks/zoho/contacts", data="id=900&ops_id=2&email=grace@example.com&first_name=Müller".encode(),
                       content_type="application/x-www-form-urlencoded",
                       headers={"X-Webhook-Token": gw.secret})
    assert r.status_code == 200 and r.get_json() == {"status": "applied"}, r.get_json()
    assert gw.customer(2)["customers_firstname"] == "Müller"
    r = gw.client.post("/webhooks/zoho/contacts", data=b"id=900&first_name=M\xfcller",
                       content_type="application/x-www-form-urlencoded", headers={"X-Webhook-Token": gw.secret})
    assert r.status_code == 422 and r.get_json()["parameter"] == "body"
    assert gw.customer(2)["customers_firstname"] == "Müller"


# -- a parameter given twice, ids taken whole ---------------------------------------------------------
def test_a_json_parameter_given_twice_is_422_and_changes_nothing(gw):
    before = gw.snapshot()
    r = gw.client.post("/webhooks/zoho/deals", content_type="application/json", headers={"X-Webhook-Token": gw.secret},
                       data='{"id": "9500", "ops_id": "1", "stage": "Shipped", "stage": "Cancelled"}')
    assert r.status_code == 422
    assert r.get_json() == {"error": "stage is given more than once", "parameter": "stage"}
    assert gw.snapshot() == before and reports.recent(gw.rt) == []


def test_an_id_with_a_trailing_newline_or_sent_as_a_json_float_is_422_and_links_nothing(gw):
    before = gw.snapshot()
    for params, as_json in (({"id": "9501\n", "ops_id": "1", "stage": "Shipped"}, False),
                            ({"id": "9501", "ops_id": "1\n", "stage": "Shipped"}, False),
                            ({"id": 5.725767000003000064e18, "ops_id": 1, "stage": "Shipped"}, True),
                            ({"id": "9501", "ops_id": 1.0, "stage": "Shipped"}, True)):
        r = gw.post("deals", params, as_json=as_json)
        assert r.status_code == 422, (params, r.get_json())
        assert r.get_json()["parameter"] == ("id" if "\n" in str(params["id"]) or isinstance(params["id"], float) else "ops_id")
    assert gw.snapshot() == before and reports.recent(gw.rt) == []
    with gw.rt.store.engine.connect() as conn:
        assert ops_id_for(conn, "Deals", "9501\n") is None and ops_id_for(conn, "Deals", "5725767000003000320") is None


# -- a status just added in OnPrintShop -----------------------------------------------------------------
def _add_status(gw, sid: int, name: str) -> None:
    with gw.rt.ops.engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO orders_status (orders_status_id, orders_status_name) VALUES (:i, :n)"),
                     {"i": sid, "n": name})


def test_a_status_just_added_in_onprintshop_is_taken_at_once(gw):
    assert gw.post("deals", {"id": "9502", "ops_id": "1", "stage": "Shipped", "modified_time": zt()}).status_code == 200
    _add_status(gw, 7, "Proofing")  # the status cache (30 s) does not know it yet
    r = gw.post("deals", {"id": "9502", "stage": "proofing", "modified_time": zt(1)})
    assert r.status_code == 200 and r.get_json() == {"status": "applied"}, r.get_json()
    assert gw.order(1)["orders_status_id"] == 7
    assert gw.history(1)[-1][:2] == (7, "Zoho CRM: Deal 9502 moved to stage Proofing")
    r = gw.post("deals", {"id": "9502", "stage": "Qualification", "modified_time": zt(2)})
    assert r.status_code == 422 and r.get_json()["parameter"] == "stage"  # still unknown after asking: refused


def test_an_unknown_stage_while_onprintshop_is_unreachable_is_still_422_from_the_cached_statuses(gw_sqlite, monkeypatch):
    gw = gw_sqlite
    assert gw.rt.ops.status_names()  # cached
    before = gw.snapshot()

    def gone(conn=None, refresh=False):
        raise sa.exc.OperationalError("SELECT", {}, Exception("server has gone away"))

    monkeypatch.setattr(gw.rt.ops, "statuses", gone)
    r = gw.post("deals", {"id": "9503", "ops_id": "1", "stage": "Qualification", "modified_time": zt()})
    assert r.status_code == 422 and r.get_json()["parameter"] == "stage"
    assert gw.rt.ops.recently_unavailable()
    r = gw.post("deals", {"id": "9503", "ops_id": "1", "stage": "Qualification", "modified_time": zt()})
    assert r.status_code == 422 and r.get_json()["parameter"] == "stage"  # not asked again while "down"
    assert gw.snapshot() == before


# -- the repeated hour when clocks go back ---------------------------------------------------------------
# America/New_York, 1 November 2026: 02:00 EDT becomes 01:00 EST, so 01:00-01:59 happens twice.
def _at(monkeypatch, utc: str) -> None:
    """The gateway's clock (reading times; OnPrintShop's last change) at this UTC moment."""
    from gateway.inbound import parse

    moment = dt.datetime.fromisoformat(utc).replace(tzinfo=dt.timezone.utc).timestamp()
    monkeypatch.setattr(parse, "clock", lambda: moment)
    monkeypatch.setattr(timezones, "clock", lambda: moment)


def _new_york_gateway(make_app, ops_db_url) -> Gateway:
    gw = Gateway(make_app(OPS_DATABASE_URL=ops_db_url, GATEWAY_ZOHO_TIMEZONE="America/New_York",
                          OPS_TIMEZONE="America/New_York"))
    with gw.rt.ops.engine.begin() as conn:
        conn.execute(sa.text("UPDATE orders SET last_modified = :t WHERE orders_id = 1"),
                     {"t": dt.datetime(2026, 10, 31, 12, 0)})
    return gw


def test_a_zoho_change_in_the_second_pass_of_the_repeated_hour_is_applied(make_app, ops_db_url, monkeypatch):
    gw = _new_york_gateway(make_app, ops_db_url)
    _at(monkeypatch, "2026-11-01 05:50:30")  # 01:50:30 EDT
    r = gw.post("deals", {"id": "9504", "ops_id": "1", "stage": "Shipped", "modified_time": "2026-11-01 01:50:00"})
    assert r.get_json() == {"status": "applied"}
    _at(monkeypatch, "2026-11-01 06:10:30")  # 01:10:30 EST, twenty minutes later
    r = gw.post("deals", {"id": "9504", "stage": "Cancelled", "modified_time": "2026-11-01 01:10:00"})
    assert r.status_code == 200 and r.get_json() == {"status": "applied"}, r.get_json()
    order = gw.order(1)
    assert order["orders_status_id"] == 6 and as_dt(order["last_modified"]) == dt.datetime(2026, 11, 1, 1, 10)


def test_a_store_edit_in_the_second_pass_is_not_overwritten_by_an_older_zoho_change(make_app, ops_db_url, monkeypatch):
    gw = _new_york_gateway(make_app, ops_db_url)
    # OnPrintShop's own edit at 01:30 EST (06:30 UTC); it keeps naive local times
    with gw.rt.ops.engine.begin() as conn:
        conn.execute(sa.text("UPDATE orders SET orders_status_id = 3, last_modified = :t WHERE orders_id = 1"),
                     {"t": dt.datetime(2026, 11, 1, 1, 30)})
    before = gw.snapshot()
    _at(monkeypatch, "2026-11-01 06:40:00")
    # made in Zoho at 06:10 UTC, before the store's edit, delivered after it
    r = gw.post("deals", {"id": "9505", "ops_id": "1", "stage": "Cancelled", "modified_time": "2026-11-01T06:10:00Z"})
    assert r.status_code == 200 and r.get_json() == {"status": "stale"}, r.get_json()
    assert gw.snapshot() == before
