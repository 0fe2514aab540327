"""The loop guard (`gw_loopguard`): the OnPrintShop row versions the gateway itself wrote from
Zoho, which the change poller skips (docs/inbound.md, "No echo")."""
from __future__ import annotations

import datetime as dt
import time

import sqlalchemy as sa

from ..state import dialect, direct
from ..state.tables import loopguard_table

ORDER_WRITES = "order_writes"  # an order's last-modified as OnPrintShop stamped the gateway's own API write
TABLE_KEYS = ("customers", "orders", ORDER_WRITES)

_WRITTEN = sa.select(loopguard_table.c.ops_id).where(
    loopguard_table.c.table_key == sa.bindparam("table_key"),
    loopguard_table.c.ops_id == sa.bindparam("ops_id"),
    loopguard_table.c.last_modified == sa.bindparam("last_modified"),
)


def stamp(last_modified) -> str:
    """The canonical text of a `last_modified` value (naive datetime or text), to the second."""
    if isinstance(last_modified, dt.datetime):
        if last_modified.tzinfo is not None:
            raise ValueError("last_modified must be the naive OnPrintShop value")
        return last_modified.replace(microsecond=0).strftime("%Y-%m-%d %H:%M:%S")
    return str(last_modified).strip().replace("T", " ")[:19]


def record(conn, table_key: str, ops_id: int, last_modified) -> None:
    """Note, in the caller's transaction, that the gateway wrote this row with this `last_modified`."""
    if table_key not in TABLE_KEYS:
        raise ValueError(f"table_key must be one of {TABLE_KEYS}")
    statement = dialect.upsert(loopguard_table, ("table_key", "ops_id", "last_modified"), ("recorded_at",),
                               conn.dialect.name)
    direct.run(conn, statement, {"table_key": table_key, "ops_id": int(ops_id), "last_modified": stamp(last_modified),
                             "recorded_at": time.time()})


def record_many(conn, rows) -> None:
    """`record` for several (table_key, ops_id, last_modified) rows, in one statement."""
    if any(row[0] not in TABLE_KEYS for row in rows):
        raise ValueError(f"table_key must be one of {TABLE_KEYS}")
    statement = dialect.upsert(loopguard_table, ("table_key", "ops_id", "last_modified"), ("recorded_at",),
                               conn.dialect.name)
    now = time.time()
    unique = {(key, int(ops_id), stamp(last_modified)) for key, ops_id, last_modified in rows}  # one row once
    conn.execute(statement, [{"table_key": key, "ops_id": ops_id, "last_modified": moment, "recorded_at": now}
                             for key, ops_id, moment in sorted(unique)])


def written_by_gateway(conn, table_key: str, ops_id: int, last_modified) -> bool:
    """Did the gateway's inbound side write exactly this change (this row, this `last_modified`)?"""
    if last_modified is None:
        return False
    row = conn.execute(_WRITTEN, {"table_key": table_key, "ops_id": int(ops_id), "last_modified": stamp(last_modified)}).first()
    return row is not None


def purge(conn, older_than_epoch: float) -> int:
    return conn.execute(loopguard_table.delete().where(loopguard_table.c.recorded_at < older_than_epoch)).rowcount
