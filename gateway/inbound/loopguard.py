"""The loop guard: which OnPrintShop changes the gateway itself wrote from Zoho (`gw_loopguard`).

Why: the outbound change poller pushes OnPrintShop rows whose `last_modified` moved. A change
that came *from* Zoho must not be pushed back (an endless ping-pong, and a waste of Zoho's
daily credits). OnPrintShop's tables are not ours to extend, so the origin is kept here, in
the gateway's state store.

What is recorded: for every row the inbound side updates, `(table_key, ops_id, last_modified)`
where `table_key` is the reference table name (`"customers"` or `"orders"`) and `last_modified`
is the exact naive value written to the row's `last_modified` column (OPS_TIMEZONE, whole
seconds). It is recorded in the same state-store transaction that marks the delivery applied,
committed right after the OnPrintShop transaction.

How the outbound side uses it: for each changed row it reads from OnPrintShop, call
`written_by_gateway(conn, table_key, ops_id, row.last_modified)` with a state-store
connection. True means the row is exactly as the gateway wrote it from Zoho: skip it (but move
the poller's cursor past it). False means someone changed it in OnPrintShop since (its
`last_modified` is different): push it. The comparison is on the datetime to the second,
so a store edit within the same second as a Zoho write, that also keeps `last_modified`
unchanged, cannot be told apart; OnPrintShop always sets `last_modified` on its own edits.
Between the OnPrintShop commit and the state-store commit (well under a millisecond) a poller
could see the change before its guard row: the poller should treat rows whose `last_modified`
is within the last couple of seconds on its next run rather than now, or accept that rare
harmless push (the values are Zoho's own).

Rows older than the retention period are purged with the inbox (`inbox.purge`).
"""
from __future__ import annotations

import datetime as dt
import time

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql, sqlite

from ..store import metadata

TABLE_KEYS = ("customers", "orders")

loopguard_table = sa.Table(
    "gw_loopguard",
    metadata,
    sa.Column("table_key", sa.String(32), primary_key=True),
    sa.Column("ops_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("last_modified", sa.String(19), primary_key=True),  # 'YYYY-MM-DD HH:MM:SS', naive, OPS_TIMEZONE
    sa.Column("recorded_at", sa.Double, nullable=False),
    sa.Index("ix_gw_loopguard_recorded", "recorded_at"),
)


def stamp(last_modified) -> str:
    """The canonical text of a `last_modified` value (datetime or text), to the second."""
    if isinstance(last_modified, dt.datetime):
        if last_modified.tzinfo is not None:
            raise ValueError("last_modified must be the naive OnPrintShop value")
        return last_modified.replace(microsecond=0).strftime("%Y-%m-%d %H:%M:%S")
    text = str(last_modified).strip().replace("T", " ")
    return text[:19]


def record(conn, table_key: str, ops_id: int, last_modified) -> None:
    """Note that the gateway wrote this row with this `last_modified` (in the caller's transaction)."""
    if table_key not in TABLE_KEYS:
        raise ValueError(f"table_key must be one of {TABLE_KEYS}")
    values = {"table_key": table_key, "ops_id": int(ops_id), "last_modified": stamp(last_modified), "recorded_at": time.time()}
    conn.execute(_upsert(conn.dialect.name), values)


def _upsert(dialect: str):
    """One statement that records a change, or refreshes its time when the same change is written
    again (a re-apply); built once per dialect."""
    statement = _UPSERTS.get(dialect)
    if statement is None:
        if dialect == "mysql":
            insert = mysql.insert(loopguard_table)
            statement = insert.on_duplicate_key_update(recorded_at=insert.inserted.recorded_at)
        elif dialect in ("postgresql", "sqlite"):
            insert = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}[dialect](loopguard_table)
            statement = insert.on_conflict_do_update(
                index_elements=["table_key", "ops_id", "last_modified"], set_={"recorded_at": insert.excluded.recorded_at},
            )
        else:
            raise ValueError(f"the loop guard has no upsert for {dialect}")
        _UPSERTS[dialect] = statement
    return statement


_UPSERTS: dict = {}
_WRITTEN = sa.select(loopguard_table.c.ops_id).where(
    loopguard_table.c.table_key == sa.bindparam("table_key"),
    loopguard_table.c.ops_id == sa.bindparam("ops_id"),
    loopguard_table.c.last_modified == sa.bindparam("last_modified"),
)


def written_by_gateway(conn, table_key: str, ops_id: int, last_modified) -> bool:
    """Did the gateway's inbound side write exactly this change (this row, this `last_modified`)?"""
    if last_modified is None:
        return False
    row = conn.execute(_WRITTEN, {"table_key": table_key, "ops_id": int(ops_id), "last_modified": stamp(last_modified)}).first()
    return row is not None


def purge(conn, older_than_epoch: float) -> int:
    return conn.execute(loopguard_table.delete().where(loopguard_table.c.recorded_at < older_than_epoch)).rowcount
