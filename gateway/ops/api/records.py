"""OnPrintShop's GraphQL documents the gateway sends, and its records made the port's.

Names are OnPrintShop's (`userid`, `user_id`, `total_amount`, `currency_code`); an order's
`purchased` is its invoice date, else the day the gateway first saw it."""
from __future__ import annotations

import datetime as dt
import hashlib
import json
from decimal import Decimal, InvalidOperation

from ..port import Customer, Order

PAGE = 250  # OnPrintShop's most rows per list request

CUSTOMER_FIELDS = ("userid customers_email_address customers_first_name customers_last_name customers_telephone "
                   "customers_company external_ref customers_register_date")
ORDER_FIELDS = ("orders_id user_id orders_status_id order_status payment_status_title total_amount currency_code "
                f"invoice_date order_last_modified_date customer {{ {CUSTOMER_FIELDS} }}")

ORDERS = ("query Orders($orders_id: Int, $customer_id: Int, $from_date: String, $limit: Int, $offset: Int) {"
          " orders(orders_id: $orders_id, customer_id: $customer_id, from_date: $from_date, limit: $limit, offset: $offset)"
          f" {{ currentCount totalOrders orders {{ {ORDER_FIELDS} }} }} }}")
CUSTOMERS = ("query Customers($email: String, $date_type: CustomerDateTypeEnum, $from_date: String, $limit: Int, $offset: Int) {"
             " customers(email: $email, date_type: $date_type, from_date: $from_date, limit: $limit, offset: $offset)"
             f" {{ currentCount totalCustomers customers {{ {CUSTOMER_FIELDS} }} }} }}")
STATUSES = ("query Statuses($limit: Int, $offset: Int) { orderStatus(limit: $limit, offset: $offset)"
            " { currentCount totalOrderStatus orderStatus { process_status_id process_status_title status_type } } }")
UPDATE_ORDER_STATUS = ("mutation UpdateOrderStatus($orders_id: Int, $input: UpdateOrderStatusInput!) {"
                       " updateOrderStatus(orders_id: $orders_id, type: order, input: $input) { id message result } }")
SET_CUSTOMER = ("mutation SetCustomer($customer_id: Int, $input: SetCustomerInput!) {"
                " setCustomer(customer_id: $customer_id, input: $input) { id message result external_ref } }")
EVERYTHING_SINCE = "2000-01-01"  # a from_date before any store: "every record" (a list needs a filter)

# A Contact's parameters → SetCustomerInput's fields and the Customer's.
CONTACT_INPUT = {"first_name": "first_name", "last_name": "last_name", "email": "email", "phone": "phone_no"}
CUSTOMER_KEYS = {"first_name": "customers_first_name", "last_name": "customers_last_name",
                 "email": "customers_email_address", "phone": "customers_telephone"}


def parse_time(value) -> dt.datetime | None:
    """An OnPrintShop date-time string as a naive datetime (its own wall clock); None when empty or zero."""
    text = str(value or "").strip()
    if not text or text.startswith("0000"):
        return None
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace(" ", "T", 1) if len(text) > 10 else text)
    except ValueError:
        return None
    return when.replace(tzinfo=None, microsecond=0)


def _money(value) -> Decimal | None:
    try:
        return None if value is None else Decimal(str(value)).quantize(Decimal("0.01"))
    except (InvalidOperation, ValueError):
        return None


def _int(value) -> int | None:
    try:
        return None if value in (None, "") else int(value)
    except (TypeError, ValueError):
        return None


def customer_data(row: dict) -> dict:
    """What the gateway keeps of an API customer (JSON-able)."""
    return {"id": _int(row.get("userid")), "first_name": row.get("customers_first_name"),
            "last_name": row.get("customers_last_name"), "email": row.get("customers_email_address"),
            "phone": row.get("customers_telephone") or None, "company": row.get("customers_company") or None,
            "external_ref": row.get("external_ref") or None, "registered": row.get("customers_register_date") or None}


def order_data(row: dict) -> dict:
    """What the gateway keeps of an API order (JSON-able); `modified` is kept apart from the content."""
    customer = row.get("customer") if isinstance(row.get("customer"), dict) else {}
    total = _money(row.get("total_amount"))
    return {"id": _int(row.get("orders_id")), "customer_id": _int(row.get("user_id")) or _int(customer.get("userid")),
            "status_id": _int(row.get("orders_status_id")), "status": row.get("order_status") or None,
            "payment_status": row.get("payment_status_title") or None, "total": None if total is None else str(total),
            "currency": row.get("currency_code") or None, "invoice_date": row.get("invoice_date") or None}


def order_statuses(rows: list[dict]) -> list[list]:
    """[[id, title]] of the order statuses in `orderStatus` rows: one list holds order and order-product
    statuses; those whose `status_type` names products are left out."""
    return [[int(r["process_status_id"]), str(r["process_status_title"])] for r in rows
            if r.get("process_status_title") and "product" not in str(r.get("status_type") or "").lower()]


def content_hash(data: dict) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


def customer_record(data: dict) -> Customer:
    return Customer(int(data["id"]), data.get("first_name"), data.get("last_name"), data.get("email"),
                    data.get("phone"), data.get("company"))


def order_record(data: dict, modified: dt.datetime | None, first_seen: dt.datetime | None) -> Order:
    invoiced = parse_time(data.get("invoice_date"))
    purchased = invoiced.date() if invoiced else (first_seen.date() if first_seen else None)
    total = data.get("total")
    return Order(int(data["id"]), int(data.get("customer_id") or 0), data.get("status_id"), data.get("status"),
                 data.get("payment_status"), Decimal(total) if total is not None else None, data.get("currency"),
                 purchased, modified)
