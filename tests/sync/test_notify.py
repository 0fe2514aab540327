"""Notification API mode: the channel's life, and callbacks applied to the OnPrintShop database.

What an operator checks: switching on subscribes a channel Zoho accepts (events, token, URL,
six-day expiry); it is renewed before it lapses; a callback with a wrong token or channel
changes nothing; a right one gets the records from Zoho and writes them; when Zoho cannot be
reached the ids are kept and applied later; switching off unsubscribes and refuses callbacks.
"""
from __future__ import annotations

import json
from datetime import datetime

import pytest
import sqlalchemy as sa

from gateway.inbound import notify, notify_pending
from tests.sync.conftest import history, link, ops_row

ZC1, ZC2 = "5725767000000100001", "5725767000000100002"
ZD1, ZD3 = "5725767000000200001", "5725767000000200003"


def rt_of(app):
    return app.extensions["gateway"]


def switch_on(app):
    with app.app_context():
        result = notify.set_enabled(rt_of(app), True)
    assert result.ok, result.message
    return result


def channel_secret(app):
    rt = rt_of(app)
    channel = rt.store.get_setting(notify.CHANNEL_SETTING)
    with rt.store.begin() as conn:
        return channel["channel_id"], rt.vault.get(conn, notify.TOKEN_SECRET)


def post(client, body, **kwargs):
    return client.post("/webhooks/zoho/notify", data=json.dumps(body), content_type="application/json", **kwargs)


def callback(app, module, ids, token=None, channel_id=None):
    real_channel, real_token = channel_secret(app)
    return {"server_time": 1, "query_params": {}, "module": module, "resource_uri": "x", "ids": ids,
            "affected_fields": [], "operation": "update", "channel_id": channel_id or real_channel,
            "token": real_token if token is None else token}


# -- the channel ----------------------------------------------------------------------------------
def test_switching_on_subscribes_a_channel_zoho_accepts(sync_app, fake_zoho):
    app = sync_app()
    result = switch_on(app)
    assert "https://gateway.example.com/webhooks/zoho/notify" in result.message
    assert fake_zoho.calls["watch_subscribe"] == 1
    [(channel_id, channel)] = fake_zoho.channels.items()
    assert set(channel["events"]) == {"Contacts.edit", "Deals.edit"}
    assert channel["notify_url"] == "https://gateway.example.com/webhooks/zoho/notify"
    assert channel["return_affected_field_values"] is True
    assert 32 <= len(channel["token"]) <= 50
    assert 5.9 * 86400 < channel["expires_at"] - fake_zoho.now() <= 6 * 86400  # six days, not the one-hour default
    rt = rt_of(app)
    assert notify.enabled(rt)
    status = notify.channel_status(rt)
    assert status["channel_id"] == channel_id and status["enabled"] and not status["expired"]
    assert channel["token"] not in json.dumps(status)
    # the token is kept only encrypted
    with rt.store.engine.connect() as conn:
        stored = " ".join(str(v) for row in conn.execute(sa.text("SELECT * FROM gw_secrets")) for v in row)
        stored += " ".join(str(v) for row in conn.execute(sa.text("SELECT * FROM gw_settings")) for v in row)
    assert channel["token"] not in stored


def test_switching_on_without_a_public_url_or_connection_says_what_is_missing(sync_app, fake_zoho, make_app, zoho_settings):
    app = sync_app(GATEWAY_PUBLIC_URL="")
    app.config["GATEWAY_PUBLIC_URL"] = None
    with app.app_context():
        result = notify.set_enabled(rt_of(app), True)
    assert not result.ok and "GATEWAY_PUBLIC_URL" in result.message
    unconnected = make_app(**zoho_settings, DATABASE_URL=app.config["DATABASE_URL"].replace("state.db", "other.db"))
    with unconnected.app_context():
        result = notify.set_enabled(rt_of(unconnected), True)
    assert not result.ok and "Connect Zoho CRM first" in result.message
    assert fake_zoho.channels == {}
    assert not notify.enabled(rt_of(app))


def test_a_refused_subscription_keeps_the_mode_off(sync_app, fake_zoho):
    app = sync_app(GATEWAY_PUBLIC_URL="gateway.example.com")
    with app.app_context():
        result = notify.set_enabled(rt_of(app), True)
    assert not result.ok and "GATEWAY_PUBLIC_URL" in result.message and "https://" in result.message
    app.config["GATEWAY_PUBLIC_URL"] = "https://gateway.example.com"
    fake_zoho.api_down = True
    with app.app_context():
        result = notify.set_enabled(rt_of(app), True)
    assert not result.ok and "503" in result.message and "stays off" in result.message
    assert not notify.enabled(rt_of(app)) and notify.channel_status(rt_of(app)) is None
    assert fake_zoho.channels == {}


def test_a_grant_without_the_notifications_scope_is_refused_in_plain_words(sync_app, fake_zoho):
    """The admin made the grant token with ZohoCRM.modules.ALL only: pushes work, but Zoho
    refuses the watch; the page says which scope the grant lacked and the mode stays off."""
    from gateway.zoho import connect, connection

    app = sync_app()
    client_id, client_secret = fake_zoho.add_client()
    code = fake_zoho.new_grant_code(client_id, scope="ZohoCRM.modules.ALL")
    with app.app_context():
        saved = connect.configure(rt_of(app), data_center="us", client_id=client_id, client_secret=client_secret,
                                     grant_token=code, account_id=connection.account_id(rt_of(app)))
        assert saved.ok, saved.message
        result = notify.set_enabled(rt_of(app), True)
    assert not result.ok and "stays off" in result.message
    assert "OAUTH_SCOPE_MISMATCH" in result.message and "ZohoCRM.notifications.ALL" in result.message
    assert fake_zoho.channels == {} and not notify.enabled(rt_of(app))


def test_the_channel_is_renewed_before_it_lapses(sync_app, fake_zoho):
    app = sync_app()
    switch_on(app)
    [channel_id] = fake_zoho.channels
    rt = rt_of(app)
    fake_zoho.advance(4 * 86400)  # two days left: nothing to do yet
    assert notify.renew_if_due(rt, now=fake_zoho.now()) is None
    assert fake_zoho.calls["watch_update"] == 0
    fake_zoho.advance(1.5 * 86400)  # half a day left
    result = notify.renew_if_due(rt, now=fake_zoho.now())
    assert result.ok, result.message
    assert list(fake_zoho.channels) == [channel_id]  # same channel, same token: callbacks in flight still verify
    assert fake_zoho.channels[channel_id]["expires_at"] - fake_zoho.now() > 5.9 * 86400
    assert notify.channel_status(rt)["expires_at"] > fake_zoho.now() + 5.9 * 86400
    fake_zoho.advance(2 * 86400)  # past the first expiry: the channel still reaches the gateway
    assert fake_zoho.live_channels("Deals")


def test_a_lapsed_channel_is_subscribed_again(sync_app, fake_zoho):
    app = sync_app()
    switch_on(app)
    rt = rt_of(app)
    fake_zoho.advance(7 * 86400)
    fake_zoho.channels.clear()  # Zoho forgot the lapsed channel: a PUT is refused, so the renewal POSTs
    result = notify.renew_if_due(rt, now=fake_zoho.now())
    assert result.ok, result.message
    assert fake_zoho.live_channels("Contacts")


def test_a_failed_renewal_is_recorded_and_retried(sync_app, fake_zoho):
    app = sync_app()
    switch_on(app)
    rt = rt_of(app)
    fake_zoho.advance(5.5 * 86400)
    fake_zoho.api_down = True
    result = notify.renew_if_due(rt, now=fake_zoho.now())
    assert not result.ok
    assert "503" in notify.channel_status(rt)["last_error"]
    fake_zoho.api_down = False
    assert notify.renew_if_due(rt, now=fake_zoho.now() + 10) is None  # waits a little before trying again
    assert notify.renew_if_due(rt, now=fake_zoho.now() + notify.RETRY_SECONDS + 1).ok
    assert notify.channel_status(rt)["last_error"] is None


def test_switching_off_unsubscribes_and_refuses_the_old_channel(sync_app, fake_zoho):
    app = sync_app()
    switch_on(app)
    body = callback(app, "Contacts", [ZC1])
    with app.app_context():
        result = notify.set_enabled(rt_of(app), False)
    assert result.ok and "removed in Zoho" in result.message
    assert fake_zoho.channels == {} and fake_zoho.calls["watch_delete"] == 1
    assert post(app.test_client(), body).status_code == 401
    assert notify.channel_status(rt_of(app)) is None


def test_switching_off_while_zoho_is_down_still_switches_off(sync_app, fake_zoho):
    app = sync_app()
    switch_on(app)
    fake_zoho.api_down = True
    with app.app_context():
        result = notify.set_enabled(rt_of(app), False)
    assert result.ok and "could not be told" in result.message and "lapses by itself" in result.message
    assert not notify.enabled(rt_of(app))


# -- callbacks ------------------------------------------------------------------------------------
@pytest.mark.parametrize("wrong", ["token", "channel_id", "missing token"])
def test_a_callback_with_a_wrong_token_or_channel_is_refused(sync_app, fake_zoho, wrong):
    app = sync_app()
    switch_on(app)
    link(app, "Contacts", 1, ZC1)
    fake_zoho.put_record("Contacts", ZC1, Email="ada@example.com", First_Name="Augusta", Last_Name="King")
    if wrong == "token":
        body = callback(app, "Contacts", [ZC1], token="x" * 48)
    elif wrong == "channel_id":
        body = callback(app, "Contacts", [ZC1], channel_id="1234567890123")
    else:
        body = callback(app, "Contacts", [ZC1])
        del body["token"]
    answer = post(app.test_client(), body)
    assert answer.status_code == 401 and answer.is_json and "token" in answer.get_json()["error"]
    assert ops_row(app, "customers", 1)["customers_firstname"] == "Ada"
    assert fake_zoho.calls["records_list"] == 0  # nothing fetched either
    assert notify_pending.pending_count(rt_of(app)) == 0


def test_a_callback_before_any_channel_is_refused(sync_app):
    app = sync_app()
    answer = post(app.test_client(), {"module": "Deals", "ids": ["1"], "channel_id": "1", "token": ""})
    assert answer.status_code == 401


def test_fired_callbacks_fetch_several_records_and_apply_them(sync_app, fake_zoho):
    app = sync_app(serve=True, GATEWAY_WRITE_BACK_EMAIL=True)  # Zoho posts over real HTTP to the served gateway
    switch_on(app)
    link(app, "Contacts", 1, ZC1)
    link(app, "Contacts", 2, ZC2)
    link(app, "Deals", 1, ZD1)
    link(app, "Deals", 3, ZD3)
    fake_zoho.put_record("Contacts", ZC1, Email="ada.king@example.com", First_Name="Augusta Ada", Last_Name="King",
                         Phone=None)
    fake_zoho.put_record("Contacts", ZC2, Email="grace@example.com", First_Name="Grace", Last_Name="Murray Hopper",
                         Phone="+1 202 555 0100")
    fake_zoho.put_record("Deals", ZD1, Stage="Shipped", Deal_Name="OPS Order #1")
    fake_zoho.put_record("Deals", ZD3, Stage="Closed Won", Deal_Name="OPS Order #3")

    [(status, text)] = fake_zoho.fire_notification("Contacts", [ZC1, ZC2, "5725767000000199999"])
    assert status == 200, text
    outcome = json.loads(text)
    assert outcome["status"] == "processed" and outcome["outcomes"] == {"applied": 2, "not_found": 1}
    [(status, text)] = fake_zoho.fire_notification("Deals", [ZD1, ZD3])
    assert status == 200 and json.loads(text)["outcomes"] == {"applied": 2}
    assert fake_zoho.calls["records_list"] == 2  # one read per callback, all its ids at once

    ada = ops_row(app, "customers", 1)
    assert (ada["customers_firstname"], ada["customers_lastname"], ada["customers_email_address"]) == (
        "Augusta Ada", "King", "ada.king@example.com")
    assert ada["customers_telephone"] is None  # emptied in Zoho, emptied here
    assert ops_row(app, "customers", 2)["customers_lastname"] == "Murray Hopper"
    assert ops_row(app, "orders", 1)["orders_status_id"] == 4  # Shipped
    assert ops_row(app, "orders", 3)["orders_status_id"] == 5  # Closed Won -> Order Completed
    assert "Zoho" in history(app, 1)[-1]["comments"]
    from gateway.inbound import reports

    assert {row["source"] for row in reports.recent(rt_of(app))} == {"notify"}

    # Zoho repeats a callback: the same record state is a duplicate, nothing written twice
    [(status, text)] = fake_zoho.fire_notification("Deals", [ZD1])
    assert json.loads(text)["outcomes"] == {"duplicate": 1}
    assert len(history(app, 1)) == 2
    assert notify_pending.pending_count(rt_of(app)) == 0


def test_a_callback_while_zoho_is_unreachable_is_kept_and_applied_later(sync_app, fake_zoho):
    app = sync_app()
    switch_on(app)
    rt = rt_of(app)
    link(app, "Deals", 5, ZD1)
    fake_zoho.put_record("Deals", ZD1, Stage="Printing")
    api_url = app.config["ZOHO_API_URL"]
    app.config["ZOHO_API_URL"] = "http://127.0.0.1:9"  # nothing listens there: a real connection failure
    answer = post(app.test_client(), callback(app, "Deals", [ZD1]))
    assert answer.status_code == 202 and answer.get_json()["status"] == "accepted"
    assert notify_pending.pending_count(rt) == 1
    assert ops_row(app, "orders", 5)["orders_status_id"] == 2  # Order Processing, as before
    assert notify_pending.drain_pending(rt, now=fake_zoho.now() + 3600) == {"waiting": 1}  # still down: kept

    app.config["ZOHO_API_URL"] = api_url
    assert notify_pending.drain_pending(rt, now=fake_zoho.now() + 3601) == {}  # backing off after the failed try
    assert notify_pending.drain_pending(rt, now=fake_zoho.now() + 7200)["applied"] == 1
    assert ops_row(app, "orders", 5)["orders_status_id"] == 3  # Printing
    assert notify_pending.pending_count(rt) == 0


def test_zoho_answering_503_keeps_the_ids_across_a_restart(sync_app, fake_zoho, make_app, zoho_settings):
    app = sync_app()
    switch_on(app)
    link(app, "Contacts", 3, ZC1)
    fake_zoho.put_record("Contacts", ZC1, Email="soren@example.dk", First_Name="Søren Aabye", Last_Name="Kierkegaard")
    fake_zoho.api_down = True
    assert post(app.test_client(), callback(app, "Contacts", [ZC1])).status_code == 202
    fake_zoho.api_down = False
    app.extensions["gateway"].close()
    restarted = make_app(**zoho_settings)  # a new process on the same state store and OnPrintShop database
    rt = rt_of(restarted)
    assert notify_pending.pending_count(rt) == 1
    assert notify_pending.drain_pending(rt, now=fake_zoho.now() + 3600)["applied"] == 1
    assert ops_row(restarted, "customers", 3)["customers_firstname"] == "Søren Aabye"


def test_callback_input_is_bounded_and_checked(sync_app):
    app = sync_app()
    switch_on(app)
    client = app.test_client()
    too_big = callback(app, "Deals", ["1"]) | {"padding": "x" * (64 * 1024)}
    answer = post(client, too_big)
    assert answer.status_code == 413 and answer.is_json
    answer = client.post("/webhooks/zoho/notify", data="module=Deals", content_type="application/x-www-form-urlencoded")
    assert answer.status_code == 415 and answer.is_json
    answer = client.post("/webhooks/zoho/notify", data="{not json", content_type="application/json")
    assert answer.status_code == 400 and answer.is_json
    answer = post(client, callback(app, "Leads", ["1"]))
    assert answer.status_code == 422 and answer.get_json()["parameter"] == "module"
    answer = post(client, callback(app, "Deals", ["1; DROP TABLE orders"]))
    assert answer.status_code == 422 and answer.get_json()["parameter"] == "ids"
    answer = post(client, callback(app, "Deals", ["1"]) | {"operation": "delete"})
    assert answer.status_code == 200 and answer.get_json()["status"] == "ignored"
    assert notify_pending.pending_count(rt_of(app)) == 0


def test_the_callback_is_rate_limited_with_a_json_answer(sync_app):
    app = sync_app(RATELIMIT_ENABLED=True, GATEWAY_WEBHOOK_RATE_LIMIT="2 per minute")
    switch_on(app)
    client = app.test_client()
    # Zoho's genuine callbacks are not counted (a deletion is answered without fetching anything)
    good = callback(app, "Deals", ["1"]) | {"operation": "delete"}
    assert [post(client, good).status_code for _ in range(4)] == [200, 200, 200, 200]
    body = callback(app, "Deals", ["1"], token="wrong")
    codes = [post(client, body).status_code for _ in range(3)]
    assert codes == [401, 401, 429]
    assert post(client, body).is_json


def test_the_token_never_reaches_the_logs(sync_app, fake_zoho, gateway_logs):
    app = sync_app()
    switch_on(app)
    _, token = channel_secret(app)
    post(app.test_client(), callback(app, "Deals", ["1"]))
    post(app.test_client(), callback(app, "Deals", ["1"], token=token[:-1] + "x"))
    assert token not in gateway_logs()


def test_state_store_on_other_databases(sync_app, fake_zoho, state_db_url):
    """The pending table and the channel settings work on MariaDB and PostgreSQL as on SQLite."""
    app = sync_app(state_url=state_db_url)
    switch_on(app)
    link(app, "Deals", 4, ZD1)
    fake_zoho.put_record("Deals", ZD1, Stage="Cancelled")
    fake_zoho.api_down = True
    assert post(app.test_client(), callback(app, "Deals", [ZD1])).status_code == 202
    assert post(app.test_client(), callback(app, "Deals", [ZD1])).status_code == 202  # same record: one row
    assert notify_pending.pending_count(rt_of(app)) == 1
    fake_zoho.api_down = False
    assert notify_pending.drain_pending(rt_of(app), now=fake_zoho.now() + 3600)["applied"] == 1
    assert ops_row(app, "orders", 4)["orders_status_id"] == 6


def test_callbacks_apply_to_a_mariadb_onprintshop_database(sync_app, fake_zoho, ops_db_url):
    app = sync_app(ops_url=ops_db_url)
    switch_on(app)
    link(app, "Contacts", 4, ZC1)
    fake_zoho.put_record("Contacts", ZC1, Email="chidi@example.ng", First_Name="Chidi", Last_Name="Anagonye 😀",
                         Phone="+234 1 555 0100")
    answer = post(app.test_client(), callback(app, "Contacts", [ZC1]))
    assert answer.status_code == 200 and answer.get_json()["outcomes"] == {"applied": 1}
    row = ops_row(app, "customers", 4)
    assert row["customers_lastname"] == "Anagonye 😀" and row["customers_telephone"] == "+234 1 555 0100"
    assert isinstance(row["last_modified"], datetime)


class OneRound:
    """A stop event that lets a background loop run exactly one round."""

    def __init__(self):
        self.stopped = False

    def is_set(self):
        return self.stopped

    def wait(self, timeout=None):
        self.stopped = True
        return True


def test_the_background_upkeep_renews_and_fetches_what_waited(sync_app, fake_zoho, monkeypatch):
    app = sync_app()
    switch_on(app)
    rt = rt_of(app)
    link(app, "Contacts", 2, ZC2)
    fake_zoho.put_record("Contacts", ZC2, Email="grace@example.com", First_Name="Grace B.", Last_Name="Hopper")
    fake_zoho.api_down = True
    assert post(app.test_client(), callback(app, "Contacts", [ZC2])).status_code == 202
    fake_zoho.api_down = False
    # five and a half days later (every clock, the fake's too), with the waiting ids due again;
    # the hour-long access token has lapsed meanwhile, so the first PUT is refused and retried
    later = notify.channel_status(rt)["expires_at"] - 12 * 3600
    monkeypatch.setattr(notify.time, "time", lambda: later)
    notify.run_renewal(rt, OneRound())
    assert fake_zoho.calls["watch_update"] >= 1
    assert notify.channel_status(rt)["expires_at"] > later + 5.9 * 86400
    assert ops_row(app, "customers", 2)["customers_firstname"] == "Grace B."
    assert notify_pending.pending_count(rt) == 0


def test_only_the_lease_holder_does_the_upkeep(sync_app, fake_zoho, monkeypatch):
    app = sync_app()
    switch_on(app)
    rt = rt_of(app)
    later = notify.channel_status(rt)["expires_at"] - 3600
    monkeypatch.setattr(notify.time, "time", lambda: later)
    assert rt.store.try_lease(notify.LEASE, "another-process", 10**9)
    notify.run_renewal(rt, OneRound())
    assert fake_zoho.calls["watch_update"] == 0


def test_a_body_without_a_length_is_bounded_too(sync_app):
    import io

    app = sync_app()
    switch_on(app)
    body = json.dumps(callback(app, "Deals", ["1"]) | {"padding": "x" * 70000}).encode()
    answer = app.test_client().post(
        "/webhooks/zoho/notify", input_stream=io.BytesIO(body), content_type="application/json",
        environ_overrides={"wsgi.input_terminated": True, "CONTENT_LENGTH": ""})
    assert answer.status_code == 413 and answer.is_json
    assert notify_pending.pending_count(rt_of(app)) == 0


def test_a_callback_does_not_wait_for_a_busy_zoho_gate(sync_app, fake_zoho):
    """With every Zoho call slot taken (a push burst), the ids are kept and fetched by the upkeep."""
    from gateway.zoho import gate as zoho_gate

    app = sync_app(GATEWAY_ZOHO_CONCURRENCY=1)
    switch_on(app)
    rt = rt_of(app)
    link(app, "Deals", 1, ZD1)
    fake_zoho.put_record("Deals", ZD1, Stage="Printing")
    gate = zoho_gate.for_runtime(rt)
    with gate.call():  # another thread's Zoho call holds the only slot
        answer = post(app.test_client(), callback(app, "Deals", [ZD1]))
    assert answer.status_code == 202 and notify_pending.pending_count(rt) == 1
    assert notify_pending.drain_pending(rt)["applied"] == 1
    assert ops_row(app, "orders", 1)["orders_status_id"] == 3


def test_arbitrary_callbacks_never_get_a_5xx_and_change_nothing(sync_app, fake_zoho):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    app = sync_app()
    switch_on(app)
    rt = rt_of(app)
    real_channel, real_token = channel_secret(app)
    client = app.test_client()
    before = ops_row(app, "customers", 1)
    scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=60))
    values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                          max_leaves=12)
    bodies = st.fixed_dictionaries({}, optional={
        "module": st.one_of(st.sampled_from(["Contacts", "Deals", "Leads"]), values),
        "ids": st.one_of(st.lists(st.one_of(st.text(max_size=20), st.integers()), max_size=5), values),
        "operation": st.one_of(st.sampled_from(["update", "delete", "insert"]), values),
        "channel_id": st.one_of(st.just(real_channel), values),
        "token": st.one_of(st.just(real_token), st.just(real_token[:-1] + "!"), values),
    })

    @settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
    @given(body=st.one_of(bodies.map(json.dumps), st.text(max_size=200)),
           content_type=st.sampled_from(["application/json", "text/plain", "application/x-www-form-urlencoded", "", "application/json; charset=latin-1"]))
    def check(body, content_type):
        answer = client.post("/webhooks/zoho/notify", data=body.encode("utf-8", "surrogatepass"), content_type=content_type)
        assert answer.status_code < 500, answer.get_data(as_text=True)
        assert answer.is_json
        assert answer.status_code in (200, 400, 401, 413, 415, 422)

    check()
    assert ops_row(app, "customers", 1) == before  # none of those ids is a record in Zoho
    assert notify_pending.pending_count(rt) == 0
