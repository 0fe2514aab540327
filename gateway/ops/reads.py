"""What the outbound side reads from the OnPrintShop database: records to push, and changes.

Read-only queries over the mapped tables (`ops.tables`, columns keyed by their reference
names, so they work against any store the mapping describes). Rows come back as plain dicts
keyed by reference names; orders carry their status name (`orders_status_name`, None when the
status id names no status).

`changed_since` walks rows by (`last_modified`, id): the id breaks ties, so rows sharing one
second are neither skipped nor repeated across pages, and a stored watermark resumes exactly.
"""
from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

CHUNK = 500  # ids per IN (...) list

TABLE_IDS = {"customers": "customers_id", "orders": "orders_id"}


def _columns(table, keys):
    return [table.c[key].label(key) for key in keys]


def customers_by_ids(ops, ids) -> dict[int, dict]:
    """{customers_id: row} for those of the ids that exist."""
    t = ops.tables["customers"]
    keys = ("customers_id", "customers_firstname", "customers_lastname", "customers_email_address",
            "customers_telephone", "customers_company", "last_modified")
    found: dict[int, dict] = {}
    ids = sorted({int(i) for i in ids})
    with ops.engine.connect() as conn:
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start:start + CHUNK]
            for row in conn.execute(sa.select(*_columns(t, keys)).where(t.c.customers_id.in_(chunk))).mappings():
                found[int(row["customers_id"])] = dict(row)
    return found


def orders_by_ids(ops, ids) -> dict[int, dict]:
    """{orders_id: row with orders_status_name} for those of the ids that exist."""
    o = ops.tables["orders"]
    s = ops.tables["orders_status"]
    keys = ("orders_id", "customers_id", "orders_status_id", "payment_status", "order_total", "currency",
            "date_purchased", "last_modified")
    found: dict[int, dict] = {}
    ids = sorted({int(i) for i in ids})
    query = sa.select(*_columns(o, keys), s.c.orders_status_name.label("orders_status_name")).select_from(
        o.outerjoin(s, o.c.orders_status_id == s.c.orders_status_id)
    )
    with ops.engine.connect() as conn:
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start:start + CHUNK]
            for row in conn.execute(query.where(o.c.orders_id.in_(chunk))).mappings():
                found[int(row["orders_id"])] = dict(row)
    return found


def customer_ids_of_orders(ops, order_ids) -> dict[int, int]:
    """{orders_id: customers_id}."""
    o = ops.tables["orders"]
    ids = sorted({int(i) for i in order_ids})
    found: dict[int, int] = {}
    with ops.engine.connect() as conn:
        for start in range(0, len(ids), CHUNK):
            rows = conn.execute(sa.select(o.c.orders_id, o.c.customers_id).where(o.c.orders_id.in_(ids[start:start + CHUNK])))
            found.update({int(a): int(b) for a, b in rows})
    return found


def existing_ids(ops, table_key: str, ids) -> list[int]:
    """Those of the ids that exist in `customers` or `orders`, in order."""
    t = ops.tables[table_key]
    id_col = t.c[TABLE_IDS[table_key]]
    ids = sorted({int(i) for i in ids})
    found: list[int] = []
    with ops.engine.connect() as conn:
        for start in range(0, len(ids), CHUNK):
            found.extend(int(i) for i in conn.execute(sa.select(id_col).where(id_col.in_(ids[start:start + CHUNK]))).scalars())
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
    """[(id, last_modified)] of rows after the watermark `after` = (last_modified, id), oldest first.

    `until` (naive, OPS time) leaves out rows modified later: the poller keeps a few seconds
    back from "now" so a transaction still committing rows stamped with the current second is
    not passed over.
    """
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
