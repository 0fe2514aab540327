"""The gateway's own state store (`DATABASE_URL`): engine, shared tables, leases, `init-db`.

Every concern keeps its own tables in its own module on the one `metadata` defined here;
`init_db` imports them all and creates what is missing. SQLite runs in WAL mode with a busy
timeout, and `store.immediate()` opens a `BEGIN IMMEDIATE` transaction there (a plain one
elsewhere, where `FOR UPDATE` does the locking), so several gunicorn workers can share it.
"""
from __future__ import annotations

import contextlib
import importlib
import random
import threading
import time
import uuid

import sqlalchemy as sa
from sqlalchemy import event

metadata = sa.MetaData()

# Modules that define tables on `metadata`; imported by init_db and by Store users.
TABLE_MODULES = (
    "gateway.store",
    "gateway.vault",
    "gateway.links",
    "gateway.zoho.connection",
    "gateway.admin.audit",
    "gateway.inbound.inbox",
    "gateway.outbound.queue",
    "gateway.inbound.notify",
    "gateway.zoho.gate",
    "gateway.outbound.events",
)

settings_table = sa.Table(
    "gw_settings",
    metadata,
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),  # JSON
    sa.Column("updated_at", sa.Double, nullable=False),
)

leases_table = sa.Table(
    "gw_leases",
    metadata,
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("holder", sa.String(100), nullable=True),
    sa.Column("expires_at", sa.Double, nullable=False, default=0.0),
)

schema_version_table = sa.Table(
    "gw_schema_version",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("version", sa.Integer, nullable=False),
)

SCHEMA_VERSION = 1


def make_engine(url: str, **kwargs) -> sa.Engine:
    """An engine for any supported URL; SQLite gets WAL, a busy timeout and explicit BEGINs.

    Statement parameters are kept out of error messages (they carry customers' names and
    e-mails, which must not reach the logs with a traceback).
    """
    kwargs.setdefault("hide_parameters", True)
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"timeout": 30, "check_same_thread": False}, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_conn, _record):
            dbapi_conn.isolation_level = None  # let us emit BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA busy_timeout = 30000")
            if ":memory:" not in url and url not in ("sqlite://", "sqlite:///"):
                cur.execute("PRAGMA journal_mode = WAL")
            cur.execute("PRAGMA foreign_keys = ON")
            # FULL: in WAL mode NORMAL may lose the last commits on power loss, and a webhook
            # answered 2xx must survive that.
            cur.execute("PRAGMA synchronous = FULL")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn):
            mode = conn.get_execution_options().get("sqlite_begin", "")
            conn.exec_driver_sql(f"BEGIN {mode}".strip())

        return engine
    kwargs.setdefault("pool_recycle", 280)
    if url.startswith("mysql+pymysql"):
        # pool_pre_ping and the pool's rollback-on-return cost two round trips per transaction
        # (a third of a webhook's): ping only a connection that sat idle, roll back only one
        # that may hold an open transaction.
        kwargs.setdefault("pool_reset_on_return", None)
        engine = sa.create_engine(url, **kwargs)
        _ping_when_idle(engine)
        _rollback_when_in_transaction(engine)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return sa.create_engine(url, **kwargs)


PING_AFTER_IDLE = 1.0  # seconds a pooled connection may rest before it is checked on checkout


def _ping_when_idle(engine: sa.Engine) -> None:
    """Pessimistic disconnect handling without a round trip per checkout: a connection idle for
    PING_AFTER_IDLE or longer is pinged, and a dead one is replaced (the pool retries on
    DisconnectionError). A server that dies under load is seen by the next statement instead,
    which fails like any query on a dropped connection (and invalidates the pool)."""

    @event.listens_for(engine, "connect")
    def _connected(_dbapi_conn, record):
        record.info["gw_idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_conn, record):
        record.info["gw_idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_conn, record, _proxy):
        since = record.info.get("gw_idle_since")
        if since is not None and time.monotonic() - since < PING_AFTER_IDLE:
            return
        try:
            engine.dialect.do_ping(dbapi_conn)
        except Exception as exc:
            raise sa.exc.DisconnectionError(f"stale pooled connection: {exc}") from exc


def _rollback_when_in_transaction(engine: sa.Engine) -> None:
    """The pool's reset on return (`pool_reset_on_return=None` hands it to this hook): skip the
    ROLLBACK when the last thing SQLAlchemy did on the connection was a successful COMMIT or
    ROLLBACK (nothing is open); any statement, error or raw use since means roll back as usual."""

    def dirty(conn, *_args):
        conn.info["gw_clean"] = False

    def clean(conn):
        # Fires before the COMMIT/ROLLBACK; an error there marks it dirty again. An invalidated
        # connection is discarded by the pool, never reset.
        if not conn.invalidated:
            conn.info["gw_clean"] = True

    event.listen(engine, "before_cursor_execute", dirty)
    event.listen(engine, "commit", clean)
    event.listen(engine, "rollback", clean)

    @event.listens_for(engine, "handle_error")
    def _error(context):
        conn = context.connection
        if conn is not None and not conn.closed and not conn.invalidated:
            conn.info["gw_clean"] = False

    @event.listens_for(engine, "checkout")
    def _checked_out(_dbapi_conn, record, _proxy):
        record.info["gw_clean"] = False

    @event.listens_for(engine, "reset")
    def _reset(dbapi_conn, record, state):
        if state.transaction_was_reset or (record is not None and record.info.get("gw_clean")):
            return
        dbapi_conn.rollback()


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
        """The engine for contended writes. On MariaDB/MySQL a second pool whose connections are
        READ COMMITTED from the start (row locks only, no gap locks; set once per connection, not
        a round trip per transaction); elsewhere the one engine (PostgreSQL is READ COMMITTED
        already, SQLite has one writer)."""
        if self.dialect != "mysql":
            return self.engine
        if self._write_engine is None:
            with self._write_engine_lock:
                if self._write_engine is None:
                    self._write_engine = make_engine(self.url, isolation_level="READ COMMITTED", **self._engine_kwargs)
        return self._write_engine

    # -- transactions -------------------------------------------------------------------
    def begin(self):
        """A transaction (`with store.begin() as conn:`)."""
        return self.engine.begin()

    @contextlib.contextmanager
    def immediate(self):
        """A transaction that takes the write lock at once on SQLite (read-then-write made atomic)."""
        with self.engine.connect() as conn:
            if self.dialect == "sqlite":
                conn = conn.execution_options(sqlite_begin="IMMEDIATE")
            with conn.begin():
                yield conn

    def transaction(self, work):
        """Run `work(conn)` in one write transaction and return its result; rerun it after a deadlock.

        For writes that many processes make side by side (queue claims and merges, login
        attempts): on MariaDB/MySQL the transaction runs READ COMMITTED (row locks only, no gap
        locks), on SQLite it takes the write lock at once (BEGIN IMMEDIATE); a deadlock or lock
        timeout that still happens rolled everything back, so `work` runs again from the start.
        """
        for attempt in range(6):
            try:
                with self.write_engine.connect() as conn:
                    if self.dialect == "sqlite":
                        conn = conn.execution_options(sqlite_begin="IMMEDIATE")
                    with conn.begin():
                        return work(conn)
            except sa.exc.OperationalError as exc:
                if attempt == 5 or not is_lock_conflict(exc):
                    raise
                time.sleep(random.uniform(0.005, 0.05) * (attempt + 1))

    def run(self, statement) -> int:
        """Execute one write statement as its own transaction (rerun after a deadlock, as
        `transaction`); returns the rows it touched. For the bulk UPDATE/DELETEs on tables that
        several processes write at once (leases, jobs, inbox, meters)."""
        return int(self.transaction(lambda conn: conn.execute(statement).rowcount) or 0)

    @property
    def skip_locked(self) -> bool:
        return self.dialect in ("postgresql", "mysql")

    def dispose(self) -> None:
        self.engine.dispose()
        if self._write_engine is not None:
            self._write_engine.dispose()

    # -- settings (plain values, JSON) ------------------------------------------------------
    def get_setting(self, name: str, default=None, conn=None, for_update: bool = False):
        """A setting's value; `for_update` (with `conn`) locks its row until the transaction ends,
        so a read-then-write of it cannot interleave with another (PostgreSQL, MariaDB; SQLite's
        BEGIN IMMEDIATE already holds the one write lock)."""
        import json

        query = sa.select(settings_table.c.value).where(settings_table.c.name == name)
        if for_update and self.dialect != "sqlite":
            query = query.with_for_update()

        def read(c):
            row = c.execute(query).first()
            return default if row is None else json.loads(row[0])

        if conn is not None:
            return read(conn)
        with self.engine.connect() as c:
            return read(c)

    def set_setting(self, name: str, value, conn=None) -> None:
        import json

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

        Losing a race (two first inserts of the same name, or MariaDB choosing this transaction
        as a deadlock victim) simply means someone else holds it now: False, never an error.
        """
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


def is_lock_conflict(exc: BaseException | None) -> bool:
    """A deadlock or lock-wait timeout anywhere in the exception's chain: the database rolled the
    transaction back, and running it again from the start is the remedy."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        orig = getattr(exc, "orig", None)
        for candidate in (exc, orig):
            args = getattr(candidate, "args", None) or ()
            if args and args[0] in (1213, 1205):  # MySQL/MariaDB: deadlock, lock wait timeout
                return True
            if getattr(candidate, "sqlstate", None) in ("40P01", "40001"):  # PostgreSQL
                return True
        exc = exc.__cause__ or exc.__context__
    return False


def new_holder_id() -> str:
    """A lease holder id unique to this process and call site."""
    import os

    return f"{os.getpid()}-{uuid.uuid4().hex[:8]}"


def load_table_modules() -> None:
    for name in TABLE_MODULES:
        importlib.import_module(name)


def init_db(store: Store) -> None:
    """Create or upgrade the gateway tables; idempotent, safe on every release."""
    load_table_modules()
    metadata.create_all(store.engine, checkfirst=True)
    with store.immediate() as conn:
        row = conn.execute(sa.select(schema_version_table.c.version).where(schema_version_table.c.id == 1)).first()
        if row is None:
            conn.execute(schema_version_table.insert().values(id=1, version=SCHEMA_VERSION))
        elif row[0] < SCHEMA_VERSION:
            # Future upgrades run here, in order, before the version is raised.
            conn.execute(schema_version_table.update().where(schema_version_table.c.id == 1).values(version=SCHEMA_VERSION))
