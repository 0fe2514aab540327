"""The gateway's copy of the records it read through OnPrintShop's API (`gw_ops_records`).

A read whose content differs from the copy gets a new `changed_at`, which the change poller walks
like a database's `last_modified` (docs/ops-api.md, "The gateway's copy of records")."""
from __future__ import annotations

import datetime as dt
import json

import sqlalchemy as sa

from ...state.engine import lost_race, rerun
from ...state.tables import ops_records_table
from . import records

FLOOR = dt.datetime(2000, 1, 1)
CHUNK = 500
t = ops_records_table.c


def observe(store, kind: str, rows: list[tuple[dict, dt.datetime | None]], now: dt.datetime, *, report_new=True,
            conn=None) -> list[int]:
    """Store (data, modified) read for `kind`; returns the ids whose content changed (or are new,
    when `report_new(data)` — a bool or a function — says so). In `conn` when given, else its own transaction."""
    latest: dict[int, tuple[dict, dt.datetime | None]] = {}
    for data, modified in rows:
        if data.get("id"):
            latest[int(data["id"])] = (data, modified)
    if not latest:
        return []

    def work(c):
        changed: list[int] = []
        ids = list(latest)
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start:start + CHUNK]
            known = {int(r.ops_id): r for r in c.execute(sa.select(t.ops_id, t.content, t.modified, t.changed_at).where(
                t.kind == kind, t.ops_id.in_(chunk)))}
            for ops_id in chunk:
                data, modified = latest[ops_id]
                content = records.content_hash(data)
                row = known.get(ops_id)
                values = {"data": json.dumps(data, default=str), "content": content, "customer_id": data.get("customer_id"),
                          "modified": modified}
                if row is None:
                    new = report_new(data) if callable(report_new) else report_new
                    insert = ops_records_table.insert().values(kind=kind, ops_id=ops_id, changed_at=now if new else FLOOR,
                                                               first_seen=now, **values)
                    if conn is None:
                        c.execute(insert)
                    elif not _insert_in(c, insert):
                        continue  # copied by another process meanwhile: its copy stands, the next read compares
                    if new:
                        changed.append(ops_id)
                    continue
                if modified is not None and row.modified is not None and modified < row.modified:
                    continue  # an older read than the copy
                if row.content != content:
                    # Each version of a record gets its own stamp (to the second): the loop guard
                    # and the poller tell versions apart by it.
                    values["changed_at"] = max(now, row.changed_at + dt.timedelta(seconds=1))
                    changed.append(ops_id)
                elif modified == row.modified:
                    continue
                c.execute(ops_records_table.update().where(t.kind == kind, t.ops_id == ops_id).values(**values))
        return changed

    if conn is not None:
        return work(conn)
    # Two processes may insert the same record at once: read again and decide again.
    return rerun(lambda: store.transaction(work), attempts=5, when=lost_race)


def _insert_in(conn, insert) -> bool:
    """Insert inside the caller's transaction, which a duplicate key must not end."""
    try:
        with conn.begin_nested():
            conn.execute(insert)
        return True
    except sa.exc.IntegrityError:
        return False


def read(store, kind: str, ids) -> dict[int, sa.Row]:
    """{ops_id: row (data, modified, first_seen, changed_at)} for the ids the copy holds."""
    ids = sorted({int(i) for i in ids})
    found = {}
    with store.engine.connect() as conn:
        for start in range(0, len(ids), CHUNK):
            for row in conn.execute(sa.select(t.ops_id, t.data, t.modified, t.first_seen, t.changed_at, t.customer_id).where(
                    t.kind == kind, t.ops_id.in_(ids[start:start + CHUNK]))):
                found[int(row.ops_id)] = row
    return found


def data_of(row) -> dict:
    return json.loads(row.data)


def changed_since(store, kind: str, after, until, limit: int) -> list[tuple[int, dt.datetime]]:
    """[(id, changed_at)] after the watermark (changed_at, id), oldest first, none after `until`."""
    query = sa.select(t.ops_id, t.changed_at).where(t.kind == kind, t.changed_at > FLOOR).order_by(
        t.changed_at, t.ops_id).limit(limit)
    if after is not None:
        stamp, last_id = after
        query = query.where(sa.or_(t.changed_at > stamp, sa.and_(t.changed_at == stamp, t.ops_id > int(last_id))))
    if until is not None:
        query = query.where(t.changed_at <= until)
    with store.engine.connect() as conn:
        return [(int(i), m) for i, m in conn.execute(query).all()]


def counts(store) -> dict[str, int]:
    with store.engine.connect() as conn:
        return {k: int(n) for k, n in conn.execute(sa.select(t.kind, sa.func.count()).group_by(t.kind)).all()}
