"""Catch-up: Zoho changes the gateway missed are pulled and applied with the webhook rules.

What an operator checks: the records modified since the last catch-up are written to the
OnPrintShop database; a second run writes nothing new; an older Zoho change does not roll back
a newer OnPrintShop one; more records than one page are all read; `catch-up` prints the counts;
a failed pass keeps the watermark so the next one reads those records again.
"""
from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa

from gateway.inbound import catchup
from gateway.simulator import reads as simulator_reads
from tests.sync.conftest import history, link, ops_row

ZC = ["5725767000000100001", "5725767000000100002", "5725767000000100003", "5725767000000100004"]
ZD = [f"57257670000002000{n:02d}" for n in range(1, 7)]


def rt_of(app):
    return app.extensions["gateway"]


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(int(epoch), timezone.utc).isoformat()


def watermark(app, module):
    return (rt_of(app).store.get_setting(catchup.WATERMARK_SETTING) or {}).get(module)


class OneRound(threading.Event):
    """A stop event that lets a background loop run exactly one round."""

    def wait(self, timeout=None):
        self.set()
        return True


def test_records_modified_since_the_watermark_are_applied_once(sync_app, fake_zoho):
    app = sync_app()
    rt = rt_of(app)
    start = fake_zoho.now()
    rt.store.set_setting(catchup.WATERMARK_SETTING, {"Contacts": start - 600, "Deals": start - 600})
    link(app, "Contacts", 1, ZC[0])
    link(app, "Deals", 3, ZD[0])
    fake_zoho.put_record("Contacts", ZC[0], Email="ada@example.com", First_Name="Ada", Last_Name="King", Phone="+44 1")
    fake_zoho.put_record("Contacts", ZC[1], Email="nobody@example.org", First_Name="No", Last_Name="Body")  # not ours
    fake_zoho.put_record("Contacts", ZC[2], Email="grace@example.com", First_Name="Grace", Last_Name="Brewster",
                         Modified_Time=iso(start - 3600))  # before the watermark: not read
    fake_zoho.put_record("Deals", ZD[0], Stage="Shipped")

    result = catchup.catch_up(rt, now=fake_zoho.now())
    assert (result["applied"], result["not_found"], result["duplicate"], result["stale"]) == (2, 1, 0, 0)
    assert result.problems == []
    assert ops_row(app, "customers", 1)["customers_lastname"] == "King"
    assert ops_row(app, "customers", 2)["customers_lastname"] == "Hopper"  # Grace's older change was not read
    assert ops_row(app, "orders", 3)["orders_status_id"] == 4
    assert len(history(app, 3)) == 2
    assert watermark(app, "Contacts") > start - 600  # moved on after the pass

    again = catchup.catch_up(rt, now=fake_zoho.now())
    assert again["applied"] == 0 and again["stale"] == 0  # the overlap re-reads them: duplicates, nothing written
    assert again["duplicate"] == 2
    assert len(history(app, 3)) == 2

    fake_zoho.advance(600)
    fake_zoho.put_record("Deals", ZD[0], Stage="Order Completed")
    third = catchup.catch_up(rt, now=fake_zoho.now())
    assert third["applied"] == 1  # only the new change is written
    assert third["duplicate"] <= 1  # Contacts had nothing newer: its last change is read again, as a duplicate
    assert ops_row(app, "orders", 3)["orders_status_id"] == 5


def test_an_older_zoho_change_does_not_roll_back_a_newer_onprintshop_one(sync_app, fake_zoho):
    app = sync_app()
    rt = rt_of(app)
    link(app, "Contacts", 2, ZC[1])
    customers = rt.ops.tables["customers"]
    with rt.ops.begin() as conn:  # the customer changed in the store a minute ago
        conn.execute(customers.update().where(customers.c.customers_id == 2).values(
            customers_lastname="Hopper-Store", last_modified=rt.ops.now_local() - timedelta(minutes=1)))
    fake_zoho.put_record("Contacts", ZC[1], Email="grace@example.com", First_Name="Grace", Last_Name="Hopper-Zoho",
                         Modified_Time=iso(fake_zoho.now() - 3600))  # Zoho's change is an hour old
    result = catchup.catch_up(rt, since=fake_zoho.now() - 7200, now=fake_zoho.now())
    assert result["stale"] == 1 and result["applied"] == 0
    assert ops_row(app, "customers", 2)["customers_lastname"] == "Hopper-Store"


def test_more_records_than_one_page_are_all_read(sync_app, fake_zoho, monkeypatch):
    monkeypatch.setattr(catchup, "PER_PAGE", 2)
    monkeypatch.setattr(simulator_reads, "PAGE_LIMIT", 4)  # past 4 records Zoho pages by token
    app = sync_app()
    rt = rt_of(app)
    for n, zoho_id in enumerate(ZD, start=1):
        link(app, "Deals", n, zoho_id)
        fake_zoho.put_record("Deals", zoho_id, Stage="Cancelled")
        fake_zoho.advance(1)
    asked = []
    original = fake_zoho.dispatch
    fake_zoho.dispatch = lambda req: asked.append((req.path, dict(req.query))) or original(req)
    result = catchup.catch_up(rt, since=fake_zoho.now() - 3600, now=fake_zoho.now())
    assert result["applied"] + result["duplicate"] == 6 and result["applied"] >= 5  # order 6 was Cancelled already
    assert [ops_row(app, "orders", n)["orders_status_id"] for n in range(1, 7)] == [6] * 6
    deals = [q for path, q in asked if path == "/crm/v8/Deals"]
    # page 1, page 2, then (past the fake's 4-record page limit) one page by token
    assert [q.get("page") for q in deals] == ["1", "2", None]
    assert "page_token" in deals[2] and "page" not in deals[2]


def test_the_listing_asks_zoho_the_documented_way(sync_app, fake_zoho):
    app = sync_app()
    seen = []
    original = fake_zoho.dispatch

    def spy(req):
        if req.method == "GET" and req.path.startswith("/crm/v8/"):
            seen.append((req.path, dict(req.query), req.headers.get("if-modified-since")))
        return original(req)

    fake_zoho.dispatch = spy
    since = fake_zoho.now() - 3600
    catchup.catch_up(rt_of(app), since=since, now=fake_zoho.now())
    assert [path for path, _q, _h in seen] == ["/crm/v8/Contacts", "/crm/v8/Deals"]
    path, query, header = seen[0]
    assert datetime.fromisoformat(header).utcoffset() is not None and datetime.fromisoformat(header).timestamp() == int(since)
    assert set(query["fields"].split(",")) == {"Email", "First_Name", "Last_Name", "Phone", "Modified_Time"}
    assert query["per_page"] == "200" and query["sort_by"] == "Modified_Time"
    assert set(seen[1][1]["fields"].split(",")) == {"Stage", "Modified_Time"}


def test_mapped_custom_fields_are_read_and_used(sync_app, fake_zoho, tmp_path):
    instance = tmp_path / "instance"
    instance.mkdir(exist_ok=True)
    (instance / "mapping.toml").write_text(
        '[zoho]\ndeal_ops_id_field = "OPS_Order_Id"\ndeal_payment_status_field = "Payment_Status"\n')
    app = sync_app()
    rt = rt_of(app)
    assert rt.ops.mapping.zoho_field("deal_ops_id_field") == "OPS_Order_Id"
    # no gateway link: the record is found by the OnPrintShop id Zoho holds
    fake_zoho.put_record("Deals", ZD[4], Stage="Shipped", OPS_Order_Id="5", Payment_Status="Paid")
    result = catchup.catch_up(rt, since=fake_zoho.now() - 60, now=fake_zoho.now())
    assert result["applied"] == 1
    order = ops_row(app, "orders", 5)
    assert (order["orders_status_id"], order["payment_status"]) == (4, "Paid")


def test_a_record_with_a_value_onprintshop_cannot_take_is_counted_not_fatal(sync_app, fake_zoho):
    app = sync_app()
    link(app, "Deals", 1, ZD[0])
    link(app, "Deals", 2, ZD[1])
    fake_zoho.put_record("Deals", ZD[0], Stage="Negotiation/Review")  # not an OnPrintShop status
    fake_zoho.put_record("Deals", ZD[1], Stage="Printing")
    result = catchup.catch_up(rt_of(app), since=fake_zoho.now() - 60, now=fake_zoho.now())
    assert result["invalid"] == 1 and result["applied"] == 1
    assert ops_row(app, "orders", 1)["orders_status_id"] == 1


def test_a_status_added_in_onprintshop_moments_ago_is_taken_by_the_catch_up(sync_app, fake_zoho):
    app = sync_app()
    rt = rt_of(app)
    link(app, "Deals", 1, ZD[0])
    assert "Finishing" not in rt.ops.status_names()  # read, and now cached for 30 s
    with rt.ops.engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO orders_status (orders_status_id, orders_status_name) VALUES (7, 'Finishing')"))
    fake_zoho.put_record("Deals", ZD[0], Stage="Finishing")
    result = catchup.catch_up(rt, since=fake_zoho.now() - 60, now=fake_zoho.now())
    assert result["applied"] == 1 and result["invalid"] == 0
    assert ops_row(app, "orders", 1)["orders_status_id"] == 7


def test_a_failed_pass_keeps_the_watermark(sync_app, fake_zoho):
    app = sync_app()
    rt = rt_of(app)
    rt.store.set_setting(catchup.WATERMARK_SETTING, {"Contacts": 1000.0, "Deals": 1000.0})
    fake_zoho.api_down = True
    result = catchup.catch_up(rt, now=fake_zoho.now())
    assert result["failed"] == 2 and len(result.problems) == 2 and "Contacts" in result.problems[0]
    assert watermark(app, "Contacts") == 1000.0 and watermark(app, "Deals") == 1000.0


def test_catch_up_command_prints_the_counts(sync_app, fake_zoho):
    app = sync_app()
    link(app, "Contacts", 4, ZC[3])
    fake_zoho.put_record("Contacts", ZC[3], Email="chidi@example.ng", First_Name="Chidi", Last_Name="Okafor-Anagonye")
    fake_zoho.put_record("Deals", ZD[5], Stage="Pending")  # not linked: not found
    runner = app.test_cli_runner()
    since = iso(fake_zoho.now() - 120)
    out = runner.invoke(args=["catch-up", "--since", since])
    assert out.exit_code == 0, out.output
    assert out.output.strip() == "applied 1, duplicate 0, stale 0, not found 1"
    assert ops_row(app, "customers", 4)["customers_lastname"] == "Okafor-Anagonye"
    out = runner.invoke(args=["catch-up", "--since", since])
    assert out.output.strip() == "applied 0, duplicate 1, stale 0, not found 1"

    bad = runner.invoke(args=["catch-up", "--since", "yesterday"])
    assert bad.exit_code != 0 and "--since" in bad.output and "ISO 8601" in bad.output

    fake_zoho.api_down = True
    down = runner.invoke(args=["catch-up"])
    assert down.exit_code == 1
    assert "Contacts: " in down.output and "Traceback" not in down.output


def test_a_quiet_pass_is_not_a_problem(sync_app, fake_zoho):
    """Zoho answers 304 Not Modified to a listing with If-Modified-Since when nothing changed."""
    app = sync_app()
    rt = rt_of(app)
    answers = []
    original = fake_zoho.dispatch

    def spy(req):
        answer = original(req)
        if req.method == "GET" and req.path.startswith("/crm/v8/"):
            answers.append(answer.status)
        return answer

    fake_zoho.dispatch = spy
    fake_zoho.put_record("Contacts", ZC[0], Email="ada@example.com", Last_Name="King",
                         Modified_Time=iso(fake_zoho.now() - 7200))  # before the pass looks
    rt.store.set_setting(catchup.WATERMARK_SETTING, {"Contacts": fake_zoho.now() - 600, "Deals": fake_zoho.now() - 600})
    before = rt.store.get_setting(catchup.WATERMARK_SETTING)
    result = catchup.catch_up(rt, now=fake_zoho.now())
    assert answers == [304, 304]
    assert result.problems == [] and result["failed"] == 0 and sum(result.values()) == 0
    assert catchup.last_pass(rt)["problems"] == []
    assert rt.store.get_setting(catchup.WATERMARK_SETTING) == before
    assert ops_row(app, "customers", 1)["customers_lastname"] != "King"

    out = app.test_cli_runner().invoke(args=["catch-up"])
    assert out.exit_code == 0, out.output
    assert out.output.strip() == "applied 0, duplicate 0, stale 0, not found 0"
    assert answers[2:] == [304, 304]


def test_catch_up_command_without_a_zoho_connection(make_app):
    out = make_app().test_cli_runner().invoke(args=["catch-up"])
    assert out.exit_code == 1 and "not connected" in out.output


def test_the_periodic_runner_runs_one_pass_per_deployment(sync_app, fake_zoho):
    app = sync_app()
    rt = rt_of(app)
    link(app, "Deals", 2, ZD[1])
    rt.store.set_setting(catchup.WATERMARK_SETTING, {"Contacts": fake_zoho.now() - 60, "Deals": fake_zoho.now() - 60})
    fake_zoho.put_record("Deals", ZD[1], Stage="Shipped")
    assert rt.store.try_lease(catchup.LEASE, "another-process", 600)  # someone else is catching up
    catchup.run(rt, OneRound())
    assert ops_row(app, "orders", 2)["orders_status_id"] == 5 and catchup.last_pass(rt) is None
    rt.store.release_lease(catchup.LEASE, "another-process")
    catchup.run(rt, OneRound())
    assert ops_row(app, "orders", 2)["orders_status_id"] == 4
    assert catchup.last_pass(rt)["counts"]["applied"] == 1
    calls = fake_zoho.calls["records_list"]
    catchup.run(rt, OneRound())  # not due again for 15 minutes
    assert fake_zoho.calls["records_list"] == calls


def test_catch_up_on_mariadb_onprintshop_and_other_state_stores(sync_app, fake_zoho, ops_db_url, state_db_url):
    app = sync_app(ops_url=ops_db_url, state_url=state_db_url)
    link(app, "Deals", 4, ZD[3])
    fake_zoho.put_record("Deals", ZD[3], Stage="closed lost")
    rt = rt_of(app)
    assert catchup.catch_up(rt, since=fake_zoho.now() - 60, now=fake_zoho.now())["applied"] == 1
    assert ops_row(app, "orders", 4)["orders_status_id"] == 6
    assert catchup.catch_up(rt, now=fake_zoho.now())["applied"] == 0
    with rt.store.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT COUNT(*) FROM gw_settings WHERE name = 'catchup.watermark'")).scalar() == 1
