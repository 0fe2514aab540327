"""The simulator's watch, record-read and update endpoints behave as Zoho's do (docs/simulator.md).

The sync tests rely on these rules (a token over 50 characters refused, a week at most, one
hour otherwise; listings paged by number to 2,000 records and by token beyond), so they are
checked here on their own.
"""
from __future__ import annotations

import pytest
import requests

from gateway.simulator import reads as simulator_reads
from gateway.simulator.accounts import FULL_SCOPE
from gateway.simulator.times import zoho_time

TOKEN = "1000.test.access"


@pytest.fixture
def api(fake_zoho):
    fake_zoho.access_tokens[TOKEN] = fake_zoho.now() + 3600
    fake_zoho.token_scopes[TOKEN] = FULL_SCOPE

    def call(method, path, **kwargs):
        headers = {"Authorization": f"Zoho-oauthtoken {TOKEN}", **kwargs.pop("headers", {})}
        return requests.request(method, fake_zoho.url + path, headers=headers, timeout=10, **kwargs)

    return call


def channel(fake, **changes):
    item = {"channel_id": 1000000068001, "events": ["Contacts.edit", "Deals.edit"],
            "notify_url": "https://gw.example.com/webhooks/zoho/notify", "token": "t" * 50,
            "channel_expiry": zoho_time(fake.now() + 6 * 86400),
            "return_affected_field_values": True}
    item.update(changes)
    return {"watch": [item]}


def test_watch_needs_a_live_access_token(fake_zoho):
    answer = requests.post(fake_zoho.url + "/crm/v8/actions/watch", json=channel(fake_zoho), timeout=10)
    assert answer.status_code == 401 and answer.json()["code"] == "INVALID_TOKEN"
    assert fake_zoho.channels == {}


def test_watch_subscribes_with_the_asked_expiry(api, fake_zoho):
    answer = api("POST", "/crm/v8/actions/watch", json=channel(fake_zoho))
    assert answer.status_code == 200
    item = answer.json()["watch"][0]
    assert item["status"] == "success"
    assert {e["resource_name"] for e in item["details"]["events"]} == {"Contacts", "Deals"}
    stored = fake_zoho.channels["1000000068001"]
    assert abs(stored["expires_at"] - (fake_zoho.now() + 6 * 86400)) < 2


@pytest.mark.parametrize("expiry_days", [None, 8])
def test_expiry_omitted_or_beyond_a_week_means_one_hour(api, fake_zoho, expiry_days):
    changes = {"channel_expiry": None if expiry_days is None else zoho_time(fake_zoho.now() + expiry_days * 86400)}
    body = channel(fake_zoho, **changes)
    if expiry_days is None:
        del body["watch"][0]["channel_expiry"]
    assert api("POST", "/crm/v8/actions/watch", json=body).status_code == 200
    assert abs(fake_zoho.channels["1000000068001"]["expires_at"] - (fake_zoho.now() + 3600)) < 2


@pytest.mark.parametrize("changes, api_name", [
    ({"token": "t" * 51}, "token"),
    ({"channel_id": "not-a-long"}, "channel_id"),
    ({"events": ["Contacts.rename"]}, "events"),
    ({"notify_url": ""}, "notify_url"),
])
def test_watch_refuses_bad_items(api, fake_zoho, changes, api_name):
    answer = api("POST", "/crm/v8/actions/watch", json=channel(fake_zoho, **changes))
    assert answer.status_code == 400
    assert answer.json()["watch"][0]["details"]["api_name"] == api_name
    assert fake_zoho.channels == {}


def test_delete_unsubscribes_and_a_lapsed_channel_is_not_notified(api, fake_zoho):
    sent = []
    fake_zoho.notify_transport = lambda url, body: sent.append(body) or (200, "{}")
    api("POST", "/crm/v8/actions/watch", json=channel(fake_zoho, channel_expiry=zoho_time(fake_zoho.now() + 86400)))
    fake_zoho.put_record("Deals", "11", Stage="Shipped")
    assert len(fake_zoho.fire_notification("Deals", ["11"])) == 1
    assert sent[0]["ids"] == ["11"] and sent[0]["channel_id"] == "1000000068001" and sent[0]["token"] == "t" * 50
    assert set(sent[0]) == {"server_time", "query_params", "module", "resource_uri", "ids", "affected_fields",
                            "operation", "channel_id", "token"}
    fake_zoho.advance(86400 + 1)
    assert fake_zoho.fire_notification("Deals", ["11"]) == []
    fake_zoho.advance(-86400 - 1)
    answer = api("DELETE", "/crm/v8/actions/watch", params={"channel_ids": "1000000068001"})
    assert answer.status_code == 200 and answer.json()["watch"][0]["status"] == "success"
    assert fake_zoho.fire_notification("Deals", ["11"]) == []


def test_record_reads_by_id_and_by_ids(api, fake_zoho):
    fake_zoho.put_record("Contacts", "21", Email="a@example.com", Last_Name="A")
    fake_zoho.put_record("Contacts", "22", Email="b@example.com", Last_Name="B")
    one = api("GET", "/crm/v8/Contacts/21")
    assert one.status_code == 200 and one.json()["data"][0]["Email"] == "a@example.com"
    assert api("GET", "/crm/v8/Contacts/99").status_code == 204
    many = api("GET", "/crm/v8/Contacts", params={"ids": "21,22,99", "fields": "Email"})
    assert sorted(r["id"] for r in many.json()["data"]) == ["21", "22"]
    assert set(many.json()["data"][0]) == {"id", "Email"}


def test_listing_pages_by_number_then_by_token(api, fake_zoho, monkeypatch):
    monkeypatch.setattr(simulator_reads, "PAGE_LIMIT", 4)
    since = zoho_time(fake_zoho.now() - 1)
    for n in range(7):
        fake_zoho.put_record("Deals", str(100 + n), Stage="Pending")
        fake_zoho.advance(1)
    fake_zoho.put_record("Deals", "50", Stage="old", Modified_Time=zoho_time(fake_zoho.now() - 3600))
    params = {"fields": "Stage", "per_page": 2, "sort_by": "Modified_Time", "sort_order": "asc", "page": 1}
    headers = {"If-Modified-Since": since}
    seen, answers = [], 0
    while True:
        answer = api("GET", "/crm/v8/Deals", params=params, headers=headers)
        answers += 1
        info = answer.json()["info"]
        seen += [r["id"] for r in answer.json()["data"]]
        if not info["more_records"]:
            break
        if info["next_page_token"]:
            params = {k: v for k, v in params.items() if k != "page"} | {"page_token": info["next_page_token"]}
        else:
            params["page"] += 1
    assert seen == [str(100 + n) for n in range(7)]  # the old record is before If-Modified-Since
    assert answers == 4
    too_far = api("GET", "/crm/v8/Deals", params={"fields": "Stage", "per_page": 2, "page": 3})
    assert too_far.status_code == 400
    assert api("GET", "/crm/v8/Deals").status_code == 400  # v8 wants fields=


def test_listing_answers_304_when_nothing_changed_since_and_204_for_other_empty_answers(api, fake_zoho):
    fake_zoho.put_record("Deals", "60", Stage="Pending")
    later = {"If-Modified-Since": zoho_time(fake_zoho.now() + 60)}
    quiet = api("GET", "/crm/v8/Deals", params={"fields": "Stage"}, headers=later)
    assert quiet.status_code == 304 and quiet.content == b"" and "Content-Length" not in quiet.headers
    # the connection is still usable after a body-less answer (keep-alive through a session)
    with requests.Session() as session:
        auth = {"Authorization": f"Zoho-oauthtoken {TOKEN}"}
        for _ in range(2):
            again = session.get(fake_zoho.url + "/crm/v8/Deals", params={"fields": "Stage"}, headers={**auth, **later}, timeout=10)
            assert again.status_code == 304
        assert session.get(fake_zoho.url + "/crm/v8/Deals", params={"fields": "Stage"}, headers=auth,
                           timeout=10).json()["data"][0]["id"] == "60"
    earlier = {"If-Modified-Since": zoho_time(fake_zoho.now() - 60)}
    past_the_end = api("GET", "/crm/v8/Deals", params={"fields": "Stage", "page": 2}, headers=earlier)
    assert past_the_end.status_code == 204  # records changed, just none on that page
    assert api("GET", "/crm/v8/Contacts", params={"fields": "Email"}).status_code == 204  # no If-Modified-Since
    assert api("GET", "/crm/v8/Contacts", params={"ids": "99", "fields": "Email"}).status_code == 204


def test_put_updates_records_by_id_and_never_inserts(api, fake_zoho):
    fake_zoho.put_record("Contacts", "77", Last_Name="Hopper", Email="grace@example.com")
    answer = api("PUT", "/crm/v8/Contacts", json={"data": [{"id": "77", "Phone": "555"}, {"Last_Name": "New"}]})
    assert answer.status_code == 207
    first, second = answer.json()["data"]
    assert first["code"] == "SUCCESS" and first["action"] == "update"
    assert second["code"] == "MANDATORY_NOT_FOUND" and second["details"]["api_name"] == "id"
    assert fake_zoho.records["Contacts"]["77"]["Phone"] == "555" and len(fake_zoho.records["Contacts"]) == 1
