"""The records' markers (`gw_inbox_applied`) for a batch: locked together in key order, read with
what a decision needs, and written back in one statement (docs/inbound.md, "Group commit")."""
from __future__ import annotations

import time

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql, sqlite

from ..state import dialect, direct
from ..state.tables import applied_table, inbox_table, links_table

m = applied_table.c
_EARLIEST_PENDING = sa.select(sa.func.min(inbox_table.c.modified_time)).where(
    inbox_table.c.module == m.module, inbox_table.c.zoho_id == m.zoho_id, inbox_table.c.state == "pending",
).scalar_subquery().label("earliest_pending")
_LINKED = sa.select(links_table.c.ops_id).where(
    links_table.c.module == m.module, links_table.c.zoho_id == m.zoho_id).scalar_subquery().label("linked")
_READ = (m.module, m.zoho_id, m.modified_time, m.fingerprint, m.ops_id, _EARLIEST_PENDING, _LINKED)
_INSERT_MISSING = {
    dialect.MYSQL: mysql.insert(applied_table).prefix_with("IGNORE"),
    dialect.POSTGRESQL: postgresql.insert(applied_table).on_conflict_do_nothing(),
    dialect.SQLITE: sqlite.insert(applied_table).on_conflict_do_nothing(),
}
_REFRESHED = ("modified_time", "fingerprint", "ops_id", "updated_at")
_statements: dict = {}


class Record:
    """One Zoho record's marker as the batch leaves it: the last update applied (time,
    fingerprint, OnPrintShop id), its earliest pending delivery, its link, what the batch applied."""

    __slots__ = ("modified_time", "fingerprint", "ops_id", "earliest_pending", "linked", "seen", "dirty")

    def __init__(self, row):
        self.modified_time, self.fingerprint, self.ops_id = row.modified_time, row.fingerprint, row.ops_id
        self.earliest_pending, self.linked = row.earliest_pending, row.linked
        self.seen: set[tuple] = set()
        self.dirty = False

    def values(self) -> dict:
        return {"modified_time": self.modified_time, "fingerprint": self.fingerprint, "ops_id": self.ops_id,
                "updated_at": time.time()}


def _statement(kind: str, modules: int):
    """`kind`: "read" (the markers with the earliest pending row and the link), "read locked" (the
    same, FOR UPDATE: MariaDB reads them once the lock is granted) or "lock" (FOR UPDATE alone);
    `modules`: how many modules the keys span (0: a single key)."""
    stmt = _statements.get((kind, modules))
    if stmt is None:
        if modules == 0:  # one record: plain parameters (an expanding IN is rendered anew at each execution)
            where = sa.and_(m.module == sa.bindparam("m"), m.zoho_id == sa.bindparam("z"))
        else:
            where = sa.or_(*(sa.and_(m.module == sa.bindparam(f"m{i}"),
                                     m.zoho_id.in_(sa.bindparam(f"z{i}", expanding=True))) for i in range(modules)))
        columns = (m.module, m.zoho_id) if kind == "lock" else _READ[2:] if modules == 0 else _READ
        stmt = sa.select(*columns).where(where).order_by(m.module, m.zoho_id)
        if kind != "read":
            stmt = stmt.with_for_update()
        _statements[(kind, modules)] = stmt
    return stmt


def _params(keys) -> dict:
    if len(keys) == 1:
        ((module, zoho_id),) = keys
        return {"m": module, "z": zoho_id}
    by_module: dict[str, list[str]] = {}
    for module, zoho_id in sorted(keys):
        by_module.setdefault(module, []).append(zoho_id)
    params = {}
    for i, (module, ids) in enumerate(sorted(by_module.items())):
        params[f"m{i}"], params[f"z{i}"] = module, ids
    return params


def _lock_and_read(conn, dialect_name: str, keys) -> dict:
    params = _params(keys)
    modules = 0 if "m" in params else len(params) // 2
    if dialect_name == dialect.POSTGRESQL:
        # A statement reads the snapshot taken before its lock waits: lock first, then read.
        direct.rows(conn, _statement("lock", modules), params)
        query = _statement("read", modules)
    else:
        query = _statement("read locked" if dialect_name == dialect.MYSQL else "read", modules)
    if modules == 0:  # one record: its key is known, and not read back
        found = direct.rows(conn, query, params)
        return {next(iter(keys)): Record(found[0])} if found else {}
    return {(row.module, row.zoho_id): Record(row) for row in conn.execute(query, params)}


def lock(conn, dialect_name: str, keys) -> dict[tuple, Record]:
    """Lock the markers of these (module, zoho_id) keys in key order (making the missing ones) and
    read them; SQLite's BEGIN IMMEDIATE already holds its one write lock."""
    records = _lock_and_read(conn, dialect_name, keys)
    missing = [key for key in keys if key not in records]
    if missing:
        now = time.time()
        conn.execute(_INSERT_MISSING[dialect_name], [{"module": module, "zoho_id": zoho_id, "updated_at": now}
                                                     for module, zoho_id in sorted(missing)])
        records.update(_lock_and_read(conn, dialect_name, missing))  # another's new marker: waits for its lock
    return records


def save(conn, changed: list[tuple[tuple, Record]]) -> None:
    """Write back the markers of the records the batch applied an update to, in one statement."""
    statement = dialect.upsert(applied_table, ("module", "zoho_id"), _REFRESHED, conn.dialect.name)
    conn.execute(statement, [{"module": module, "zoho_id": zoho_id, **record.values()}
                             for (module, zoho_id), record in changed])
