"""The development simulator as the console uses it: "Try it with the simulated Zoho" (connect, set up
its workflow webhooks, queue every customer and order), and what its page lists. The HTTP side
hands the simulator in; nothing here imports it (docs/simulator.md)."""
from __future__ import annotations

import logging
from datetime import datetime

from ..inbound import secrets
from ..ops import OpsError
from ..outbound import push
from ..results import Result
from ..sync.modules import MODULES
from ..zoho import connect as zoho_connect
from ..zoho import connection
from .panels import WEBHOOK_HEADER, merge_fields

log = logging.getLogger("gateway.admin")

CONNECTION_SETTING = "simulator.connection"  # {"generation"} of the connection made to the simulator
ACCOUNT_NAME = "OnPrintShop customers"
LISTED = 25  # rows of each list on the page


def connect(rt, sim, simulator_url: str, base_url: str) -> Result:
    """Connect the gateway to the simulator at `simulator_url` with a grant code it issues itself, point its
    workflow webhooks at `base_url`, and queue every customer and order (forced: a fresh Zoho)."""
    client_id, client_secret = sim.add_client("us")
    result = zoho_connect.configure(rt, data_center="us", client_id=client_id, client_secret=client_secret,
                                    grant_token=sim.new_grant_code(client_id), account_id=_account(sim),
                                    own_accounts_server=simulator_url)
    if not result.ok:
        return Result(False, f"Could not connect to the simulated Zoho: {result.message}", "refused")
    info = connection.load(rt.store) or {}
    rt.store.set_setting(CONNECTION_SETTING, {"generation": info.get("generation")})
    header = {WEBHOOK_HEADER: secrets.webhook_secrets(rt)["current"]}
    for endpoint, url in secrets.webhook_urls(base_url).items():
        sim.set_webhook(endpoint.capitalize(), url, merge_fields(endpoint), header)
    queued = {}
    try:
        for module in MODULES:
            queued[module.table], _ = push.enqueue_records(rt, module.zoho, rt.ops.all_ids(module.table), force=True)
    except OpsError as exc:
        log.warning("simulated Zoho: the store could not be read: %s", exc)
        return Result(True, f"Connected to the simulated Zoho, but nothing was queued: {exc}", "connected, nothing queued")
    return Result(True, (
        f"Connected to the simulated Zoho. The store's {queued['customers']} customers and {queued['orders']} orders "
        "are queued for it (as `push customers --all --force` and `push orders --all --force` would): within a minute they are "
        "Contacts and Deals on the Simulated Zoho page."), f"{queued['customers']} customers, {queued['orders']} orders queued")


def _account(sim) -> str:
    """The simulator's Account record every synced Contact and Deal is attached to (made once)."""
    for account in sim.records_of("Accounts"):
        if account.get("Account_Name") == ACCOUNT_NAME:
            return account["id"]
    return sim.add_account(ACCOUNT_NAME)


def edit(sim, module: str, record_id: str, what: str, **fields) -> Result:
    """A salesperson's edit in the simulator; the message says what `what` changed and how the
    gateway answered the workflow webhook the edit ran."""
    calls = sim.edit_record(module, record_id, **fields)
    if not calls:
        return Result(False, f"{what}. No workflow webhook is set up in the simulator: press “Try it with the "
                             "simulated Zoho” first.", f"{module} {record_id}: no webhook")
    said = " ".join(f"Zoho called the gateway's webhook (POST {c['url']}): "
                    + (f"HTTP {c['status']} {c['answer']}" if c["status"] else c["answer"]) for c in calls)
    ok = all(c["status"] and c["status"] < 300 for c in calls)
    return Result(ok, f"{what}. {said}", f"{module} {record_id}: {what}")


def in_use(rt) -> str:
    """'simulator' when the stored connection is the one made to the simulator, 'zoho' for another, 'none'."""
    info = connection.load(rt.store)
    if info is None:
        return "none"
    made = rt.store.get_setting(CONNECTION_SETTING) or {}
    return "simulator" if made.get("generation") == info.get("generation") else "zoho"


def _epoch(zoho_time) -> float | None:
    try:
        return datetime.fromisoformat(str(zoho_time)).timestamp()
    except ValueError:
        return None


def full_name(first, last) -> str:
    return " ".join(part for part in (first, last) if part)


def contact_name(record: dict) -> str:
    """A Contact's name as Zoho shows it (its lookups too): first and last name."""
    return full_name(record.get("First_Name"), record.get("Last_Name"))


def crm_lists(sim) -> dict[str, list[dict]]:
    """The simulator's Contacts and Deals as its list views show them, lookups by name, newest first."""
    accounts = {a["id"]: a.get("Account_Name") for a in sim.records_of("Accounts")}
    contacts = sim.records_of("Contacts")
    names = {c["id"]: contact_name(c) for c in contacts}

    def lookup(value, found):
        key = value.get("id") if isinstance(value, dict) else None
        return found.get(key) or key or ""

    return {
        "contacts": [{"id": c["id"], "name": names[c["id"]], "email": c.get("Email"), "phone": c.get("Phone"),
                      "account": lookup(c.get("Account_Name"), accounts), "modified": _epoch(c.get("Modified_Time"))}
                     for c in contacts[:LISTED]],
        "deals": [{"id": d["id"], "name": d.get("Deal_Name"), "stage": d.get("Stage"), "amount": d.get("Amount"),
                   "closing": d.get("Closing_Date"), "contact": lookup(d.get("Contact_Name"), names),
                   "account": lookup(d.get("Account_Name"), accounts), "modified": _epoch(d.get("Modified_Time"))}
                  for d in sim.records_of("Deals")[:LISTED]],
    }


def webhooks_sent(sim, latest: int = 10) -> tuple[dict, list[dict]]:
    """The simulator's webhook set-up ({module: {"url", "params"}}, never its headers: they hold the
    secret) and its latest calls, newest first."""
    with sim.lock:
        setup = {module: {"url": hook["url"], "params": dict(hook["params"])} for module, hook in sim.webhooks.items()}
        calls = list(reversed(sim.webhook_log[-latest:]))
    return setup, calls


def store_lists(rt) -> dict[str, list[dict]]:
    """The store's latest orders and customers (read through the OnPrintShop port), newest first."""
    ops = rt.ops
    order_ids = sorted(ops.all_ids("orders"), reverse=True)[:LISTED]
    orders = ops.orders(order_ids)
    customer_ids = sorted(ops.all_ids("customers"), reverse=True)[:LISTED]
    customers = ops.customers(set(customer_ids) | {o.customer_id for o in orders.values()})

    def changed(naive):
        return None if naive is None else ops.epoch_from_local(naive)

    def name(customer):
        return full_name(customer.first_name, customer.last_name) if customer else ""

    return {
        "orders": [{"id": o.id, "customer": name(customers.get(o.customer_id)), "status": o.status_name,
                    "payment": o.payment_status, "total": o.total, "currency": o.currency,
                    "changed": changed(o.last_modified)} for o in (orders[i] for i in order_ids if i in orders)],
        "customers": [{"id": c.id, "name": name(c), "email": c.email, "phone": c.phone, "changed": changed(c.last_modified)}
                      for c in (customers[i] for i in customer_ids if i in customers)],
    }


def status_names(rt) -> list[str]:
    """The store's order statuses: the Stage picklist a salesperson picks from (none when unknown)."""
    return list(rt.ops.status_names() or [])
