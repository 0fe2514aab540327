"""Pushing OnPrintShop records to Zoho: the payloads and their hash, sorting a batch (`prepare`),
one upsert call per batch and every record's own result (docs/outbound.md, "Payloads")."""
from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import hashlib
import json

import sqlalchemy as sa

from ..ops import Customer, Order
from ..state.tables import links_table
from . import queue

API_VERSION = "v8"
BATCH_SIZE = 100  # Zoho's most records per upsert
DUPLICATE_CHECK = {"Contacts": ["Email"], "Deals": ["Deal_Name"]}
# Per-record codes that mean "this record as it is will never be accepted": the job is dead.
REFUSED_CODES = frozenset({"INVALID_DATA", "MANDATORY_NOT_FOUND", "DUPLICATE_DATA"})
TABLE_OF = {"Contacts": "customers", "Deals": "orders"}


class NotConnected(Exception):
    """There is no Zoho Account ID to attach records to (Zoho is not connected)."""


# -- payloads (pure) ---------------------------------------------------------------------------
def deal_name(orders_id: int) -> str:
    return f"OPS Order #{int(orders_id)}"


def contact_record(customer: Customer, account_id: str, mapping=None, zoho_id: str | None = None) -> dict:
    """A customer → the Zoho Contact to send."""
    record = {
        "First_Name": customer.first_name,
        "Last_Name": customer.last_name,
        "Email": customer.email,
        "Phone": customer.phone or None,
        "Account_Name": {"id": account_id},
    }
    ops_field = mapping.zoho_field("contact_ops_id_field") if mapping is not None else None
    if ops_field:
        record[ops_field] = int(customer.id)
    if zoho_id:
        record["id"] = zoho_id
    return record


def _amount(value) -> float | None:
    if value is None:
        return None
    return float(decimal.Decimal(str(value)).quantize(decimal.Decimal("0.01")))


def _date(value) -> str | None:
    """`YYYY-MM-DD`, or None for no date: NULL, or text that is not a date, such as MySQL's zero
    date, which PyMySQL hands back as '0000-00-00 00:00:00' and mysqlclient as None."""
    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    try:
        return dt.date.fromisoformat(str(value).strip()[:10]).isoformat()
    except ValueError:
        return None


def deal_record(order: Order, account_id: str, contact_id: str | None, mapping=None, zoho_id: str | None = None,
                with_contact: bool = True) -> dict:
    """An order → the Zoho Deal to send."""
    record = {
        "Deal_Name": deal_name(order.id),
        "Amount": _amount(order.total),
        "Stage": order.status_name,
        "Closing_Date": _date(order.purchased),
    }
    if with_contact:
        record["Contact_Name"] = {"id": contact_id}
    record["Account_Name"] = {"id": account_id}
    if mapping is not None:
        ops_field = mapping.zoho_field("deal_ops_id_field")
        if ops_field:
            record[ops_field] = int(order.id)
        payment_field = mapping.zoho_field("deal_payment_status_field")
        if payment_field:
            record[payment_field] = order.payment_status
    if zoho_id:
        record["id"] = zoho_id
    return record


def record_hash(record: dict) -> str:
    """A hash of what is sent for a record (its Zoho id left out: the content is what counts)."""
    content = {k: v for k, v in record.items() if k != "id"}
    return hashlib.sha256(json.dumps(content, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


def upsert_body(module: str, records: list[dict]) -> dict:
    if len(records) > BATCH_SIZE:
        raise ValueError(f"at most {BATCH_SIZE} records per upsert call, not {len(records)}")
    return {"data": records, "duplicate_check_fields": DUPLICATE_CHECK[module], "trigger": []}


def upsert_path(module: str) -> str:
    return f"/crm/{API_VERSION}/{module}/upsert"


# -- a batch ---------------------------------------------------------------------------------------
@dataclasses.dataclass
class Outgoing:
    ops_id: int
    record: dict
    hash: str
    customer_id: int | None = None  # a Deal's customer, whose Contact is its Contact_Name


@dataclasses.dataclass
class Prepared:
    module: str
    send: list[Outgoing] = dataclasses.field(default_factory=list)
    unchanged: list[int] = dataclasses.field(default_factory=list)
    missing: list[int] = dataclasses.field(default_factory=list)  # no longer in OnPrintShop
    waiting: dict[int, int] = dataclasses.field(default_factory=dict)  # orders_id -> customers_id without a Contact
    no_customer: dict[int, int] = dataclasses.field(default_factory=dict)  # orders_id -> customers_id not in OnPrintShop


def linked_ids(store, module: str, ids) -> dict[int, tuple[str, str | None]]:
    """{ops_id: (zoho_id, sent_hash)} for the linked ones among ids."""
    ids = list(ids)
    found: dict[int, tuple[str, str | None]] = {}
    with store.engine.connect() as conn:
        for start in range(0, len(ids), 500):
            rows = conn.execute(
                sa.select(links_table.c.ops_id, links_table.c.zoho_id, links_table.c.sent_hash).where(
                    links_table.c.module == module, links_table.c.ops_id.in_(ids[start:start + 500])
                )
            )
            found.update({int(r.ops_id): (r.zoho_id, r.sent_hash) for r in rows})
    return found


def enqueue_records(rt, module: str, ops_ids, force: bool = False) -> tuple[int, int]:
    """Queue these records, and for Deals the customers whose Contact is not in Zoho yet (they go
    first); returns (records queued, customers queued with them)."""
    ops_ids = sorted({int(i) for i in ops_ids})
    queue.enqueue(rt, module, ops_ids, force=force)
    if module != "Deals" or not ops_ids:
        return len(ops_ids), 0
    customers = set(rt.ops.customer_ids_of_orders(ops_ids).values())
    unlinked = sorted(customers - set(linked_ids(rt.store, "Contacts", customers)))
    if unlinked:
        queue.enqueue(rt, "Contacts", unlinked)
    return len(ops_ids), len(unlinked)


def prepare(rt, module: str, ops_ids, *, account_id: str, force=False, dry_run: bool = False,
            contacts_synced: bool = True) -> Prepared:
    """Sort one batch into what to send, unchanged, gone, waiting for a Contact or without a customer.
    `force`: True or the ids to send even if unchanged; `dry_run` also shows Deals still waiting,
    with `Contact_Name: {"id": null}`."""
    ops_ids = list(dict.fromkeys(int(i) for i in ops_ids))
    forced = set(ops_ids) if force is True else set(force or ())
    result = Prepared(module)
    mapping = rt.ops.mapping
    links = linked_ids(rt.store, module, ops_ids)
    if module == "Contacts":
        rows = rt.ops.customers(ops_ids)
        contact_links = {}
    else:
        rows = rt.ops.orders(ops_ids)
        contact_links = linked_ids(rt.store, "Contacts", {r.customer_id for r in rows.values()})
    for ops_id in ops_ids:
        row = rows.get(ops_id)
        if row is None:
            result.missing.append(ops_id)
            continue
        linked = links.get(ops_id)
        zoho_id = linked[0] if linked else None
        if module == "Contacts":
            record = contact_record(row, account_id, mapping, zoho_id)
        else:
            customer_id = row.customer_id
            contact = contact_links.get(customer_id)
            if contacts_synced and contact is None and not dry_run:
                result.waiting[ops_id] = customer_id
                continue
            record = deal_record(row, account_id, contact[0] if contact else None, mapping, zoho_id,
                                 with_contact=contacts_synced)
        digest = record_hash(record)
        if linked and linked[1] == digest and ops_id not in forced:
            result.unchanged.append(ops_id)
            continue
        result.send.append(Outgoing(ops_id, record, digest, None if module == "Contacts" else row.customer_id))
    if result.waiting:
        # Waiting for a Contact only helps when the customer exists to make one from.
        present = rt.ops.customers(set(result.waiting.values()))
        for order_id, customer_id in list(result.waiting.items()):
            if customer_id not in present:
                result.no_customer[order_id] = result.waiting.pop(order_id)
    return result


@dataclasses.dataclass
class RecordResult:
    ops_id: int
    ok: bool
    zoho_id: str | None = None
    code: str | None = None
    message: str | None = None
    field: str | None = None

    @property
    def refused(self) -> bool:
        """Zoho will never take this record as it is (the job is dead)."""
        return not self.ok and self.code in REFUSED_CODES

    def describe(self) -> str:
        where = f" (field {self.field})" if self.field else ""
        return f"Zoho {self.code or 'error'}: {self.message or 'no message'}{where}"


class BatchRefused(Exception):
    """Zoho refused the whole call without per-record results (HTTP 4xx); the message says why."""


def send(rt, module: str, outgoing: list[Outgoing]) -> list[RecordResult]:
    """One upsert call; every record's own result, in the order sent. Raises the client's errors, and
    BatchRefused for a 4xx without per-record results."""
    body = upsert_body(module, [o.record for o in outgoing])
    response = rt.zoho.request("POST", upsert_path(module), json=body)
    return read_results(response.status_code, _json(response), outgoing)


def _json(response):
    try:
        return response.json()
    except ValueError:
        return None


def read_results(status: int, body, outgoing: list[Outgoing]) -> list[RecordResult]:
    """Zoho's answer → one RecordResult per record sent, in order (a pure function)."""
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list) or len(data) != len(outgoing):
        message = body.get("message") if isinstance(body, dict) else None
        code = body.get("code") if isinstance(body, dict) else None
        raise BatchRefused(f"Zoho answered HTTP {status} {code or ''} without a result per record: {message or 'no message'}")
    results = []
    for sent, item in zip(outgoing, data, strict=True):
        item = item if isinstance(item, dict) else {}
        details = item.get("details") if isinstance(item.get("details"), dict) else {}
        ok = str(item.get("status", "")).lower() == "success" or item.get("code") == "SUCCESS"
        zoho_id = str(details["id"]) if ok and details.get("id") else None
        if ok and zoho_id is None:
            ok = False  # a success without an id cannot be linked: treat it as a failed attempt
            item = {"code": "NO_ID", "message": "Zoho reported success without the record's id"}
        results.append(RecordResult(
            ops_id=sent.ops_id, ok=ok, zoho_id=zoho_id,
            code=None if ok else str(item.get("code") or "error"),
            message=None if ok else str(item.get("message") or ""),
            field=None if ok else (details.get("api_name") or None),
        ))
    return results
