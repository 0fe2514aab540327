"""The demo OnPrintShop database: the reference schema (docs/onprintshop.md) with a few customers
and orders, for `init-ops-demo` and `make run`; the one place the gateway creates tables there."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

from .schema import CREATE_ORDER

DEMO_STATUSES = (
    (1, "Pending"),
    (2, "Order Processing"),
    (3, "Printing"),
    (4, "Shipped"),
    (5, "Order Completed"),
    (6, "Cancelled"),
)

DEMO_CUSTOMERS = (
    # firstname, lastname, email, telephone, company
    ("Ada", "Lovelace", "ada@example.com", "+44 20 7946 0018", "Analytical Prints Ltd"),
    ("Grace", "Hopper", "grace@example.com", "+1 202 555 0143", None),
    ("Søren", "Kierkegaard", "soren@example.dk", None, "Enten-Eller Tryk"),
    ("Chidi", "Okafor", "chidi@example.ng", "+234 1 555 0199", None),
)

DEMO_ORDERS = (
    # customer number (1-based), status id, payment status, total, currency, days ago
    (1, 1, "Unpaid", "149.90", "GBP", 2),
    (1, 5, "Paid", "89.00", "GBP", 40),
    (2, 3, "Paid", "1200.00", "USD", 5),
    (3, 4, "Paid", "310.50", "DKK", 9),
    (4, 2, "Unpaid", "75.25", "USD", 1),
    (2, 6, "Unpaid", "19.99", "USD", 20),
)


class TablesExist(Exception):
    """The OnPrintShop database already has some of the reference tables."""

    def __init__(self, names):
        self.names = list(names)
        super().__init__(
            "the OnPrintShop database already has these tables: " + ", ".join(self.names)
            + " (init-ops-demo refuses to touch them; add --force to drop and recreate them with demo data)"
        )


def create_if_absent(ops) -> bool:
    """Create the demo schema and rows when none of its tables exists; True when created."""
    if ops.existing_tables():
        return False
    create(ops)
    return True


def create(ops, force: bool = False) -> None:
    """Create the reference schema with demo rows; with `force`, drop the existing tables first."""
    existing = ops.existing_tables()
    if existing and not force:
        raise TablesExist(existing)
    tables = ops.tables
    metadata = next(iter(tables.values())).metadata
    ordered = [tables[key] for key in CREATE_ORDER]
    if existing:
        metadata.drop_all(ops.engine, tables=list(reversed(ordered)), checkfirst=True)
    metadata.create_all(ops.engine, tables=ordered, checkfirst=False)
    _fill(ops)
    ops.statuses(refresh=True)


def _fill(ops) -> None:
    t = ops.tables
    now = ops.now_local()
    with ops.begin() as conn:
        conn.execute(t["orders_status"].insert(), [
            {"orders_status_id": sid, "orders_status_name": name} for sid, name in DEMO_STATUSES
        ])
        customer_ids = []
        for number, (first, last, email, phone, company) in enumerate(DEMO_CUSTOMERS, start=1):
            created = now - dt.timedelta(days=60 - number)
            result = conn.execute(t["customers"].insert().values(
                customers_firstname=first, customers_lastname=last, customers_email_address=email,
                customers_telephone=phone, customers_company=company,
                date_account_created=created, last_modified=created,
            ))
            customer_ids.append(result.inserted_primary_key[0])
        for number, status_id, payment, total, currency, days_ago in DEMO_ORDERS:
            purchased = now - dt.timedelta(days=days_ago)
            result = conn.execute(t["orders"].insert().values(
                customers_id=customer_ids[number - 1], orders_status_id=status_id, payment_status=payment,
                order_total=Decimal(total), currency=currency, date_purchased=purchased, last_modified=purchased,
            ))
            conn.execute(t["orders_status_history"].insert().values(
                orders_id=result.inserted_primary_key[0], orders_status_id=status_id, date_added=purchased,
                customer_notified=0, comments="demo order",
            ))

