"""The state store (`DATABASE_URL`): transactions, settings and leases over one engine.

`immediate()` takes SQLite's one write lock at once; elsewhere `FOR UPDATE` does the locking."""
from __future__ import annotations

import contextlib
import json
import os
import threading
import time
import uuid

import sqlalchemy as sa

from . import dialect as dialects
from .engine import is_lock_conflict, make_engine, rerun
from .tables import leases_table, settings_table


class Store:
    """The state store: one engine, transactions, settings and leases."""

    def __init__(self, url: str, **engine_kwargs):
        self.url = url
        self.engine = make_engine(url, **engine_kwargs)
        self.dialect = self.engine.dialect.name  # 'sqlite', 'postgresql', 'mysql'
        self._engine_kwargs = engine_kwargs
        self._write_engine: sa.Engine | None = None
        self._write_engine_lock = threading.Lock()

    @property
    def write_engine(self) -> sa.Engine:
        """The engine for contended writes: on MariaDB/MySQL a second pool whose connections are
        READ COMMITTED from the start (row locks only, no gap locks); elsewhere the one engine."""
        if self.dialect != dialects.MYSQL:
            return self.engine
        if self._write_engine is None:
            with self._write_engine_lock:
                if self._write_engine is None:
                    self._write_engine = make_engine(self.url, isolation_level="READ COMMITTED", **self._engine_kwargs)
        return self._write_engine

    @property
    def skip_locked(self) -> bool:
        return dialects.has_skip_locked(self.dialect)

    # -- transactions -------------------------------------------------------------------------
    def begin(self):
        """A transaction (`with store.begin() as conn:`)."""
        return self.engine.begin()

    @contextlib.contextmanager
    def immediate(self):
        """A transaction that takes the write lock at once on SQLite (read-then-write made atomic)."""
        with self.engine.connect() as conn:
            conn = dialects.begin_immediate(conn)
            with conn.begin():
                yield conn

    @contextlib.contextmanager
    def writing(self):
        """A contended write transaction: READ COMMITTED on MariaDB/MySQL, BEGIN IMMEDIATE on SQLite."""
        with self.write_engine.connect() as conn:
            conn = dialects.begin_immediate(conn)
            with conn.begin():
                yield conn

    def transaction(self, work):
        """Run `work(conn)` in one `writing()` transaction and return its result; after a
        deadlock (which rolled everything back) run it again from the start."""
        def once():
            with self.writing() as conn:
                return work(conn)

        return rerun(once)

    def run(self, statement) -> int:
        """Execute one write statement as its own `transaction`; returns the rows it touched."""
        return int(self.transaction(lambda conn: conn.execute(statement).rowcount) or 0)

    def ping(self) -> None:
        """Raises when the state store does not answer."""
        with self.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))

    def dispose(self) -> None:
        self.engine.dispose()
        if self._write_engine is not None:
            self._write_engine.dispose()

    # -- settings (plain values, JSON) --------------------------------------------------------
    def get_setting(self, name: str, default=None, conn=None, for_update: bool = False):
        """A setting's value; `for_update` (with `conn`) locks its row until the transaction ends."""
        query = sa.select(settings_table.c.value).where(settings_table.c.name == name)
        if for_update:
            query = dialects.locked(query, self.dialect)

        def read(c):
            row = c.execute(query).first()
            return default if row is None else json.loads(row[0])

        if conn is not None:
            return read(conn)
        with self.engine.connect() as c:
            return read(c)

    def set_setting(self, name: str, value, conn=None) -> None:
        def write(c):
            payload = json.dumps(value)
            updated = c.execute(
                settings_table.update().where(settings_table.c.name == name).values(value=payload, updated_at=time.time())
            )
            if updated.rowcount == 0:
                c.execute(settings_table.insert().values(name=name, value=payload, updated_at=time.time()))

        if conn is not None:
            write(conn)
        else:
            with self.immediate() as c:
                write(c)

    def delete_setting(self, name: str, conn) -> None:
        conn.execute(settings_table.delete().where(settings_table.c.name == name))

    # -- leases -----------------------------------------------------------------------------
    def try_lease(self, name: str, holder: str, seconds: float) -> bool:
        """Take or extend the named lease if it is free, lapsed or already ours; True when held.
        Losing a race (a duplicate first insert, a deadlock victim) is False, never an error."""
        now = time.time()
        try:
            with self.immediate() as conn:
                taken = conn.execute(
                    leases_table.update()
                    .where(leases_table.c.name == name)
                    .where(sa.or_(leases_table.c.expires_at < now, leases_table.c.holder == holder, leases_table.c.holder.is_(None)))
                    .values(holder=holder, expires_at=now + seconds)
                ).rowcount
                if taken:
                    return True
                if conn.execute(sa.select(leases_table.c.name).where(leases_table.c.name == name)).first():
                    return False
                conn.execute(leases_table.insert().values(name=name, holder=holder, expires_at=now + seconds))
                return True
        except sa.exc.IntegrityError:
            return False
        except sa.exc.OperationalError as exc:
            if is_lock_conflict(exc):
                return False
            raise

    def release_lease(self, name: str, holder: str) -> None:
        with self.begin() as conn:
            conn.execute(
                leases_table.update()
                .where(leases_table.c.name == name, leases_table.c.holder == holder)
                .values(holder=None, expires_at=0.0)
            )


def new_holder_id() -> str:
    """A lease holder id unique to this process and call site."""
    return f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
