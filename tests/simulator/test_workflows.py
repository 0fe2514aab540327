"""The simulator's workflow webhooks: a person's edit runs the module's webhook as Zoho does (form
data, merge fields, custom header), and an unreachable gateway is logged, not raised."""
from __future__ import annotations

import urllib.parse

import pytest

from gateway.simulator import ZohoSimulator
from gateway.simulator.workflows import render

def test_an_edit_posts_the_webhook_as_form_data_with_merge_fields_and_the_header(requests_mock):
    sim = ZohoSimulator()
    account = sim.add_account("Print shop")
    sim.put_record("Deals", "900", Deal_Name="OPS Order #7", Stage="Pending", Account_Name={"id": account})
    sim.set_webhook("Deals", "http://gateway.test/webhooks/zoho/deals",
                    {"id": "${Deals.Deal Id}", "stage": "${Deals.Stage}", "modified_time": "${Deals.Modified Time}",
                     "account": "${Deals.Account Name}", "constant": "from Zoho"},
                    {"X-Webhook-Token": "the shared secret"})
    requests_mock.post("http://gateway.test/webhooks/zoho/deals", status_code=200, json={"status": "applied"})

    [call] = sim.edit_record("Deals", "900", Stage="Shipped")

    sent = requests_mock.last_request
    assert sent.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert sent.headers["X-Webhook-Token"] == "the shared secret"
    form = dict(urllib.parse.parse_qsl(sent.text))
    record = sim.records["Deals"]["900"]
    assert form == {"id": "900", "stage": "Shipped", "modified_time": record["Modified_Time"], "account": account,
                    "constant": "from Zoho"}
    assert call["status"] == 200 and call["answer"] == '{"status": "applied"}' and sim.webhook_log == [call]


def test_an_edit_without_a_webhook_calls_nothing_and_an_unreachable_gateway_is_logged():
    sim = ZohoSimulator()
    sim.put_record("Contacts", "1", Last_Name="King")
    assert sim.edit_record("Contacts", "1", Phone="123") == []
    assert sim.records["Contacts"]["1"]["Phone"] == "123"
    sim.set_webhook("Contacts", "http://127.0.0.1:9/webhooks/zoho/contacts", {"id": "${Contacts.Contact Id}"})
    [call] = sim.edit_record("Contacts", "1", Phone="456")
    assert call["status"] is None and call["answer"] == "not delivered (ConnectionError)"
    with pytest.raises(KeyError):
        sim.edit_record("Contacts", "2", Phone="1")


def test_merge_fields_render_as_zoho_fills_them():
    record = {"id": "5", "First_Name": "Ada", "Phone": None, "Account_Name": {"id": "9", "name": "Prints"}}
    assert render("${Contacts.Contact Id}|${Contacts.First Name}|${Contacts.Phone}|${Contacts.Account Name}|${Deals.Stage}",
                  "Contacts", record) == "5|Ada||Prints|"
