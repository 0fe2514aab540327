"""The outbound commands exactly as docs/commands.md words them: push, queue status, queue retry-dead."""
from __future__ import annotations

import json

from gateway.outbound import queue
from gateway.zoho import connect


def test_dry_run_prints_the_exact_bodies_and_sends_and_queues_nothing(gw_sqlite, runner_for):
    gw = gw_sqlite
    customers = gw.add_customers(2)
    orders = gw.add_orders(customers)
    result = runner_for(gw.app).invoke(args=["push", "orders", "--id", str(orders[0]), "--id", str(orders[1]), "--dry-run"])
    assert result.exit_code == 0, result.output
    # A real run makes two calls: the customers' Contacts first (not in Zoho yet), then the Deals.
    calls = _printed_calls(result.output)
    assert [line for line, _ in calls] == ["POST /crm/v8/Contacts/upsert (2 records)",
                                           "POST /crm/v8/Deals/upsert (2 records)"]
    contacts, deals = calls[0][1], calls[1][1]
    assert contacts["trigger"] == [] and contacts["duplicate_check_fields"] == ["Email"]
    assert sorted(r["Email"] for r in contacts["data"]) == sorted(f"c{c}@example.com" for c in customers[:2])
    assert deals["trigger"] == [] and deals["duplicate_check_fields"] == ["Deal_Name"]
    assert deals["data"][0]["Contact_Name"] == {"id": None}  # its Contact is not in Zoho yet
    assert deals["data"][0]["Deal_Name"] == f"OPS Order #{orders[0]}" and deals["data"][0]["Stage"] == "Pending"
    assert "dry run: 2 call(s) would be made; nothing was sent or queued" in result.output
    assert gw.fake.calls["upsert"] == 0 and queue.status(gw.rt)["pending"] == 0


def _printed_calls(output: str) -> list[tuple[str, dict]]:
    """The `POST …` lines of a dry run, each with the JSON body printed under it."""
    calls, lines = [], output.splitlines()
    for number, line in enumerate(lines):
        if line.startswith("POST "):
            end = lines.index("}", number + 1)
            calls.append((line, json.loads("\n".join(lines[number + 1:end + 1]))))
    return calls


def test_push_orders_queues_their_customers_and_the_worker_delivers_both(gw_sqlite, runner_for):
    gw = gw_sqlite
    customers = gw.add_customers(3)
    orders = gw.add_orders(customers)
    result = runner_for(gw.app).invoke(args=["push", "orders", "--id", str(orders[0]), "--id", str(orders[2])])
    assert result.output == "queued 2 orders and 2 customers whose Contact is not in Zoho yet\n"
    gw.drain()
    assert len(gw.fake.records["Deals"]) == 2 and len(gw.fake.records["Contacts"]) == 2
    # Already pushed and unchanged: not sent again unless --force.
    runner_for(gw.app).invoke(args=["push", "orders", "--all"])
    calls = gw.fake.calls["upsert"]
    dry = runner_for(gw.app).invoke(args=["push", "orders", "--id", str(orders[0]), "--dry-run"])
    assert "unchanged since the last push, not sent (use --force): 1" in dry.output
    forced = runner_for(gw.app).invoke(args=["push", "orders", "--id", str(orders[0]), "--dry-run", "--force"])
    assert json.loads(forced.output.split("\n", 1)[1].rsplit("}", 1)[0] + "}")["data"][0]["id"]
    assert gw.fake.calls["upsert"] == calls


def test_push_refuses_bad_selections_with_one_line(gw_sqlite, runner_for):
    runner = runner_for(gw_sqlite.app)
    both = runner.invoke(args=["push", "customers", "--all", "--id", "1"])
    assert both.exit_code != 0 and "exactly one of --id" in both.output
    missing = runner.invoke(args=["push", "customers", "--id", "99999"])
    assert missing.exit_code == 1 and "no customers with id 99999" in missing.output
    since = runner.invoke(args=["push", "customers", "--since", "yesterday"])
    assert since.exit_code != 0 and "ISO 8601" in since.output
    assert queue.status(gw_sqlite.rt)["pending"] == 0
    ok = runner.invoke(args=["push", "customers", "--since", "2000-01-01T00:00:00Z"])
    assert ok.output == "queued 4 customers\n"  # the demo's four


def test_queue_status_prints_the_contract_keys(gw_sqlite, runner_for):
    gw = gw_sqlite
    queue.enqueue(gw.rt, "Contacts", gw.add_customers(2))
    as_json = json.loads(runner_for(gw.app).invoke(args=["queue", "status", "--json"]).output)
    assert list(as_json) == ["pending", "in_flight", "done", "dead", "paused", "paused_reason", "oldest_pending_seconds", "last_error"]
    assert as_json["pending"] == 2 and as_json["paused"] is False and as_json["last_error"] is None
    assert isinstance(as_json["oldest_pending_seconds"], (int, float))
    text = runner_for(gw.app).invoke(args=["queue", "status"]).output
    assert text.startswith("pending: 2\nin_flight: 0\ndone: 0\ndead: 0\npaused: no\n")


def test_retry_dead_by_id(gw_sqlite, runner_for):
    gw = gw_sqlite
    ids = gw.add_customers(2)
    for i in ids:
        gw.update_customer(i, customers_email_address=f"broken{i}")
    queue.enqueue(gw.rt, "Contacts", ids)
    gw.drain()
    dead = queue.dead_jobs(gw.rt)
    assert len(dead) == 2
    runner = runner_for(gw.app)
    assert runner.invoke(args=["queue", "retry-dead"]).exit_code != 0
    result = runner.invoke(args=["queue", "retry-dead", "--id", str(dead[0]["id"])])
    assert result.output == "moved 1 dead jobs back to pending\n"
    assert queue.status(gw.rt)["pending"] == 1 and queue.status(gw.rt)["dead"] == 1


def test_dry_run_follows_the_modules_chosen_for_sync(gw_sqlite, runner_for):
    gw = gw_sqlite
    client_id, secret = gw.fake.add_client("us")
    result = connect.configure(gw.rt, data_center="us", client_id=client_id, client_secret=secret,
                                  grant_token=gw.fake.new_grant_code(client_id), account_id=gw.account_id,
                                  modules=("deals",))
    assert result.ok, result.message
    orders = gw.add_orders(gw.add_customers(1))
    dry = runner_for(gw.app).invoke(args=["push", "orders", "--id", str(orders[0]), "--dry-run"])
    calls = _printed_calls(dry.output)
    # Contacts are not synced: no Contacts call, and the Deal goes without Contact_Name, as a real run does
    assert [line for line, _ in calls] == ["POST /crm/v8/Deals/upsert (1 records)"]
    assert "Contact_Name" not in calls[0][1]["data"][0]
    dry = runner_for(gw.app).invoke(args=["push", "customers", "--all", "--dry-run"])
    assert _printed_calls(dry.output) == []
    assert "Contacts are not synced" in dry.output and "dry run: 0 call(s)" in dry.output
