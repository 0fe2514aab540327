"""What outbound reads from the OnPrintShop database (read-only): records to push, and changed
rows by (`last_modified`, id), the id breaking ties so no row is skipped or repeated across pages."""
from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from ..port import Customer, Order

CHUNK = 500  # ids per IN (...) list
TABLE_IDS = {"customers": "customers_id", "orders": "orders_id"}


def _chunks(ids):
    ids = sorted({int(i) for i in ids})
    for start in range(0, len(ids), CHUNK):
        yield ids[start:start + CHUNK]


def customers_by_ids(ops, ids) -> dict[int, Customer]:
    """{customers_id: Customer} for those of the ids that exist."""
    c = ops.tables["customers"].c
    query = sa.select(c.customers_id, c.customers_firstname, c.customers_lastname, c.customers_email_address,
                      c.customers_telephone, c.customers_company, c.last_modified)
    found: dict[int, Customer] = {}
    with ops.engine.connect() as conn:
        for chunk in _chunks(ids):
            for row in conn.execute(query.where(c.customers_id.in_(chunk))):
                found[int(row[0])] = Customer(int(row[0]), *row[1:])
    return found


def orders_by_ids(ops, ids) -> dict[int, Order]:
    """{orders_id: Order} (with its status name) for those of the ids that exist."""
    o = ops.tables["orders"]
    s = ops.tables["orders_status"]
    query = sa.select(o.c.orders_id, o.c.customers_id, o.c.orders_status_id, s.c.orders_status_name, o.c.payment_status,
                      o.c.order_total, o.c.currency, o.c.date_purchased, o.c.last_modified).select_from(
        o.outerjoin(s, o.c.orders_status_id == s.c.orders_status_id))
    found: dict[int, Order] = {}
    with ops.engine.connect() as conn:
        for chunk in _chunks(ids):
            for row in conn.execute(query.where(o.c.orders_id.in_(chunk))):
                found[int(row[0])] = Order(int(row[0]), int(row[1]), *row[2:])
    return found


def customer_ids_of_orders(ops, order_ids) -> dict[int, int]:
    """{orders_id: customers_id}."""
    o = ops.tables["orders"]
    found: dict[int, int] = {}
    with ops.engine.connect() as conn:
        for chunk in _chunks(order_ids):
            rows = conn.execute(sa.select(o.c.orders_id, o.c.customers_id).where(o.c.orders_id.in_(chunk)))
            found.update({int(a): int(b) for a, b in rows})
    return found


def existing_ids(ops, table_key: str, ids) -> list[int]:
    """Those of the ids that exist in `customers` or `orders`, in order."""
    id_col = ops.tables[table_key].c[TABLE_IDS[table_key]]
    found: list[int] = []
    with ops.engine.connect() as conn:
        for chunk in _chunks(ids):
            found.extend(int(i) for i in conn.execute(sa.select(id_col).where(id_col.in_(chunk))).scalars())
    return sorted(found)


def all_ids(ops, table_key: str, since: dt.datetime | None = None) -> list[int]:
    """Every id of `customers` or `orders`, or those modified at or after `since` (naive, OPS time)."""
    t = ops.tables[table_key]
    id_col = t.c[TABLE_IDS[table_key]]
    query = sa.select(id_col).order_by(id_col)
    if since is not None:
        query = query.where(t.c.last_modified >= since)
    with ops.engine.connect() as conn:
        return [int(i) for i in conn.execute(query).scalars()]


def changed_since(ops, table_key: str, after: tuple[dt.datetime, int] | None, until: dt.datetime | None = None,
                  limit: int = 1000) -> list[tuple[int, dt.datetime]]:
    """[(id, last_modified)] of rows after the watermark `after` = (last_modified, id), oldest
    first, none modified after `until` (naive, OPS time)."""
    t = ops.tables[table_key]
    id_col = t.c[TABLE_IDS[table_key]]
    lm = t.c.last_modified
    query = sa.select(id_col, lm).order_by(lm, id_col).limit(limit)
    if after is not None:
        stamp, last_id = after
        query = query.where(sa.or_(lm > stamp, sa.and_(lm == stamp, id_col > int(last_id))))
    if until is not None:
        query = query.where(lm <= until)
    with ops.engine.connect() as conn:
        return [(int(i), m) for i, m in conn.execute(query).all()]
