"""What differs between SQLite, PostgreSQL and MariaDB/MySQL: row locks and SKIP LOCKED (SQLite's
one writer is taken at once instead), upserts, id types, the hour of an epoch time, and the lock
that lets one `init-db` run at a time (docs/architecture.md, "The state store")."""
from __future__ import annotations

import contextlib
import time

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql, sqlite

from ..errors import SchemaError

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


MIGRATION_LOCK = "gw_init_db:"  # + the database's name: MariaDB's named locks are server-wide
MIGRATION_LOCK_KEY = 0x67775F696E6974  # b"gw_init": PostgreSQL's advisory locks are per database


@contextlib.contextmanager
def migration_lock(conn, wait: float = 300.0):
    """Hold the database-wide "init-db is running" lock around the block, waiting up to `wait`
    seconds for another holder. On PostgreSQL and MariaDB/MySQL it is a session lock, taken and
    released outside any transaction (`conn` must be idle); on SQLite the caller's
    `begin_immediate` transaction is the lock."""
    name = conn.dialect.name
    if name not in (POSTGRESQL, MYSQL):
        yield
        return
    if name == POSTGRESQL:
        take = sa.text("SELECT pg_try_advisory_lock(:key)").bindparams(key=MIGRATION_LOCK_KEY)
        give = sa.text("SELECT pg_advisory_unlock(:key)").bindparams(key=MIGRATION_LOCK_KEY)
    else:
        take = sa.text("SELECT GET_LOCK(CONCAT(:name, DATABASE()), 0)").bindparams(name=MIGRATION_LOCK)
        give = sa.text("SELECT RELEASE_LOCK(CONCAT(:name, DATABASE()))").bindparams(name=MIGRATION_LOCK)
    deadline = time.monotonic() + wait
    while True:
        taken = conn.execute(take).scalar()
        conn.commit()
        if taken:
            break
        if time.monotonic() >= deadline:
            raise SchemaError(f"another init-db still holds the state store's migration lock after {wait:.0f} s")
        time.sleep(0.2)
    done = False
    try:
        yield
        done = True
    finally:
        try:
            conn.execute(give)
            conn.commit()
        except sa.exc.SQLAlchemyError:
            conn.invalidate()  # the server ends the session, and the lock with it
            if done:
                raise
