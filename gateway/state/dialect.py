"""What differs between SQLite, PostgreSQL and MariaDB/MySQL: row locks and SKIP LOCKED (SQLite's
one writer is taken at once instead), upserts, id types (docs/architecture.md, "The state store")."""
from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql, sqlite

ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")

SQLITE, POSTGRESQL, MYSQL = "sqlite", "postgresql", "mysql"


def has_row_locks(dialect: str) -> bool:
    """FOR UPDATE means something (SQLite's BEGIN IMMEDIATE already holds the one write lock)."""
    return dialect != SQLITE


def has_skip_locked(dialect: str) -> bool:
    return dialect in (POSTGRESQL, MYSQL)


def locked(query, dialect: str, skip_locked: bool = False):
    """`query` FOR UPDATE where the database has row locks (optionally SKIP LOCKED)."""
    if not has_row_locks(dialect):
        return query
    return query.with_for_update(skip_locked=skip_locked)


def begin_immediate(conn):
    """The connection with SQLite's `BEGIN IMMEDIATE` for its next transaction (as is elsewhere)."""
    if conn.dialect.name == SQLITE:
        return conn.execution_options(sqlite_begin="IMMEDIATE")
    return conn


_UPSERTS: dict = {}


def upsert(table: sa.Table, keys: tuple[str, ...], refresh: tuple[str, ...], dialect: str):
    """INSERT a row, or on a duplicate key set the `refresh` columns from it; built once per dialect."""
    cache_key = (table.name, keys, refresh, dialect)
    statement = _UPSERTS.get(cache_key)
    if statement is None:
        if dialect == MYSQL:
            insert = mysql.insert(table)
            statement = insert.on_duplicate_key_update({c: insert.inserted[c] for c in refresh})
        elif dialect in (POSTGRESQL, SQLITE):
            insert = {POSTGRESQL: postgresql.insert, SQLITE: sqlite.insert}[dialect](table)
            statement = insert.on_conflict_do_update(index_elements=list(keys), set_={c: insert.excluded[c] for c in refresh})
        else:
            raise ValueError(f"no upsert for the {dialect} dialect")
        _UPSERTS[cache_key] = statement
    return statement
