"""Database engines for any supported URL, and recognising a transaction worth running again
(docs/architecture.md, "The state store")."""
from __future__ import annotations

import random
import sqlite3
import time

import sqlalchemy as sa
from sqlalchemy import event

PING_AFTER_IDLE = 1.0  # seconds a pooled connection may rest before it is checked on checkout


def make_engine(url: str, **kwargs) -> sa.Engine:
    """An engine for `url`. Statement parameters are kept out of error messages: they carry
    customers' names and e-mails, which must not reach the logs with a traceback."""
    kwargs.setdefault("hide_parameters", True)
    if url.startswith("sqlite"):
        return _sqlite_engine(url, **kwargs)
    kwargs.setdefault("pool_recycle", 280)
    if url.startswith("mysql"):  # either driver (settings.normalize_database_url)
        # pool_pre_ping and the pool's rollback-on-return would cost two round trips per transaction.
        kwargs.setdefault("pool_reset_on_return", None)
        engine = sa.create_engine(url, **kwargs)
        _ping_when_idle(engine)
        _rollback_when_in_transaction(engine)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return sa.create_engine(url, **kwargs)


def _sqlite_engine(url: str, **kwargs) -> sa.Engine:
    engine = sa.create_engine(url, connect_args={"timeout": 30, "check_same_thread": False}, **kwargs)

    @event.listens_for(engine, "connect")
    def _sqlite_connect(dbapi_conn, _record):
        dbapi_conn.isolation_level = None  # let us emit BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA busy_timeout = 30000")
        if ":memory:" not in url and url not in ("sqlite://", "sqlite:///"):
            _enter_wal(cur)
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


def _enter_wal(cur, wait: float = 30.0) -> None:
    """Switch the file to WAL. On a new file, the first connections of several processes race to
    do it and SQLite answers the losers "database is locked" at once, without its busy wait: try
    again (for up to `wait` seconds) until one of them has switched it."""
    deadline = time.monotonic() + wait
    while True:
        try:
            cur.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.01)


def _ping_when_idle(engine: sa.Engine) -> None:
    """Ping a connection on checkout only when it rested PING_AFTER_IDLE or longer; a dead one
    is replaced (the pool retries on DisconnectionError)."""

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
    """The pool's reset on return: skip the ROLLBACK when the last thing done on the connection
    was a successful COMMIT or ROLLBACK; any statement, error or raw use since means roll back."""

    def dirty(conn, *_args):
        conn.info["gw_clean"] = False

    def clean(conn):
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


MYSQL_LOCK_CONFLICTS = (1213, 1205)  # deadlock, lock wait timeout
PG_LOCK_CONFLICTS = ("40P01", "40001")  # deadlock, serialization failure


def is_lock_conflict(exc: BaseException | None) -> bool:
    """A deadlock or lock-wait timeout anywhere in the exception's chain: the database rolled the
    transaction back, and running it again from the start is the remedy."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        for candidate in (exc, getattr(exc, "orig", None)):
            args = getattr(candidate, "args", None) or ()
            if args and args[0] in MYSQL_LOCK_CONFLICTS:
                return True
            if getattr(candidate, "sqlstate", None) in PG_LOCK_CONFLICTS:
                return True
        exc = exc.__cause__ or exc.__context__
    return False


def lost_race(exc: BaseException | None) -> bool:
    """Another process inserted the same key first (an IntegrityError) or a lock conflict: read
    again and decide again."""
    return isinstance(exc, sa.exc.IntegrityError) or is_lock_conflict(exc)


def rerun(work, *, attempts: int = 6, when=is_lock_conflict, pause: float = 0.005):
    """`work()`, run again from the start (a few times, with a short random pause) while it fails
    with an error `when(exc)` accepts: a deadlock or serialization failure by default."""
    for attempt in range(attempts):
        try:
            return work()
        except Exception as exc:
            if attempt == attempts - 1 or not when(exc):
                raise
            time.sleep(random.uniform(pause, pause * 10) * (attempt + 1))
    raise AssertionError("unreachable")
