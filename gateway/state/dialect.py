"""What differs between SQLite, PostgreSQL and MariaDB/MySQL, in one place.

- SQLite has one writer: a read-then-write takes the write lock at once (`BEGIN IMMEDIATE`)
  instead of row locks, so `FOR UPDATE` is left out there.
- `SKIP LOCKED` exists on PostgreSQL and MariaDB/MySQL 8.
- An insert-or-refresh ("upsert") is spelled differently by each.
- Auto-increment ids are BIGINT, but INTEGER on SQLite (only that is its rowid).
- SQLite may lack floor(), so the hour of an epoch time is a cast there.
"""
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


def epoch_hour(column, dialect: str):
    """The clock hour an epoch-seconds column falls in (`column // 3600`), as SQL."""
    if dialect == SQLITE:
        return sa.cast(column / 3600, sa.Integer)  # truncation, which is floor for times after 1970
    return sa.func.floor(column / 3600)


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
