"""The OnPrintShop database backend: a self-hosted store's MySQL. Connections fail fast, status
names are cached briefly, every driver error is unavailable, busy or refused (docs/ops-backends.md)."""
from __future__ import annotations

import threading
import time

import sqlalchemy as sa

from ...state.engine import make_engine
from ...timezones import LocalClock, zone
from .. import mapping as mapping_module
from ..port import OpsUnavailable
from . import reads
from .schema import build_tables
from .writer import DATABASE_ERRORS, DatabaseWriter  # noqa: F401 (DATABASE_ERRORS: part of this backend's API)

CONNECT_TIMEOUT = 3  # seconds: an unreachable OnPrintShop database must not hold a webhook for long
QUERY_TIMEOUT = 10   # seconds, per read or write on a MySQL connection
LOCK_WAIT_SECONDS = 3  # MySQL: give up waiting for a row OnPrintShop's application holds ("busy", error 1205)
STATUS_CACHE_SECONDS = 30
UNAVAILABLE_PAUSE = 2.0  # after a failed connection, do not try again for this long

# MySQL/MariaDB: cannot connect or lost the connection (2002, 2003, 2005, 2006, 2013, 2055), too
# many connections (1040), server shutting down (1053), connection killed (1927).
MYSQL_UNAVAILABLE = frozenset({1040, 1053, 1927, 2002, 2003, 2005, 2006, 2013, 2055})
MYSQL_BUSY = frozenset({1205, 1213, 3572})  # lock wait timeout, deadlock, MySQL's NOWAIT (MariaDB's is 1205)
PG_BUSY = frozenset({"40P01", "40001", "55P03"})


class OpsDatabase(LocalClock):
    """The OnPrintShop database: engine, mapping, tables, time zone."""

    name = "database"
    connectable = False

    def __init__(self, url: str, mapping: mapping_module.Mapping | None = None, timezone: str = "UTC", **engine_kwargs):
        super().__init__(zone(timezone, "OPS_TIMEZONE"))
        self.url = url
        self.mapping = mapping or mapping_module.Mapping()
        if url.startswith("mysql"):
            # A lock wait ends as error 1205 ("busy": that record waits) well before the read timeout ("down").
            engine_kwargs.setdefault("connect_args", {
                "connect_timeout": CONNECT_TIMEOUT, "read_timeout": QUERY_TIMEOUT, "write_timeout": QUERY_TIMEOUT,
                "init_command": f"SET SESSION innodb_lock_wait_timeout = {max(1, int(LOCK_WAIT_SECONDS))}",
            })
            engine_kwargs.setdefault("pool_timeout", CONNECT_TIMEOUT)
        elif url.startswith("postgresql"):
            engine_kwargs.setdefault("connect_args", {"connect_timeout": CONNECT_TIMEOUT})
        self.engine = make_engine(url, **engine_kwargs)
        self.dialect = self.engine.dialect.name
        if self.dialect == "sqlite":
            @sa.event.listens_for(self.engine, "connect")
            def _shorter_busy_wait(dbapi_conn, _record):  # runs after make_engine's own (30 s) setting
                cursor = dbapi_conn.cursor()
                cursor.execute(f"PRAGMA busy_timeout = {int(QUERY_TIMEOUT * 1000)}")
                cursor.close()

        self.tables = build_tables(self.mapping)
        self._status_lock = threading.Lock()
        self._status_cache: tuple[float, dict[str, tuple[int, str]]] | None = None
        self._unavailable_until = 0.0
        self._statements: dict[str, object] = {}

    @classmethod
    def from_config(cls, config, mapping) -> OpsDatabase:
        return cls(config["OPS_DATABASE_URL"], mapping=mapping, timezone=config.get("OPS_TIMEZONE") or "UTC")

    def describe(self) -> str:
        return "the OnPrintShop database"

    def readiness(self) -> tuple[str, str]:
        return "ops_database", "ok" if self.ping() else "unavailable"

    def report(self) -> dict:
        ok = self.ping()
        return {"state": "ok" if ok else "unavailable", "rows": [("Reached through", "its MySQL database (OPS_DATABASE_URL)")],
                "problem": None if ok else "the OnPrintShop database does not answer: updates from Zoho wait (202)"}

    def refresh_changes(self, kind: str) -> None:
        """Changes are read straight from the tables: nothing to do first."""

    # -- connections --------------------------------------------------------------------------
    def begin(self, conn=None):
        """A transaction on the OnPrintShop database; on SQLite it takes the write lock at once.
        `conn`: a connection opened beforehand (it is left open), else one from the pool."""
        return _Transaction(self, conn)

    def ping(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
            return True
        except sa.exc.SQLAlchemyError:
            return False

    def failure_kind(self, exc: BaseException) -> str:
        """"unavailable", "busy" or "refused" for an error raised by this database; an unidentified
        OperationalError or InterfaceError is "unavailable" only if a ping fails now."""
        if isinstance(exc, (sa.exc.DisconnectionError, sa.exc.TimeoutError)):
            return "unavailable"
        if not isinstance(exc, sa.exc.DBAPIError):
            return "refused"
        if exc.connection_invalidated:
            return "unavailable"
        orig = exc.orig
        args = getattr(orig, "args", ())
        code = args[0] if args and isinstance(args[0], int) else None
        sqlstate = getattr(orig, "sqlstate", None)
        if code in MYSQL_BUSY or sqlstate in PG_BUSY:
            return "busy"
        if code in MYSQL_UNAVAILABLE or (isinstance(sqlstate, str) and sqlstate[:2] in ("08", "57", "53")):
            return "unavailable"
        if self.dialect == "sqlite" and (str(getattr(orig, "sqlite_errorname", "") or "").startswith(("SQLITE_BUSY", "SQLITE_LOCKED"))
                                         or "database is locked" in str(orig)):
            return "unavailable"  # another writer holds the whole database; a ping would still answer
        if not isinstance(exc, (sa.exc.OperationalError, sa.exc.InterfaceError)):
            return "refused"
        return "refused" if self.ping() else "unavailable"

    def mark_unavailable(self, seconds: float | None = None) -> None:
        """Remember that a connection just failed: callers skip trying again for a moment."""
        self._unavailable_until = time.monotonic() + (UNAVAILABLE_PAUSE if seconds is None else seconds)

    def recently_unavailable(self) -> bool:
        return time.monotonic() < self._unavailable_until

    def dispose(self) -> None:
        self.engine.dispose()

    def existing_tables(self) -> list[str]:
        """Which of the mapped tables exist (their names in this store)."""
        names = {n.lower() for n in sa.inspect(self.engine).get_table_names()}
        return [t.name for t in self.tables.values() if t.name.lower() in names]

    def statement(self, name: str, build):
        """A statement built once per database and reused (building Core statements costs more
        than running them): `build(tables)` makes it on first use."""
        stmt = self._statements.get(name)
        if stmt is None:
            stmt = self._statements[name] = build(self.tables)
        return stmt

    # -- statuses ---------------------------------------------------------------------------------
    def statuses(self, conn=None, refresh: bool = False) -> dict[str, tuple[int, str]]:
        """{casefolded status name: (orders_status_id, name)}; cached for a short while."""
        now = time.monotonic()
        cached = self._status_cache
        if conn is None and not refresh and cached and now - cached[0] < STATUS_CACHE_SECONDS:
            return cached[1]
        t = self.tables["orders_status"]

        def read(c):
            rows = c.execute(sa.select(t.c.orders_status_id, t.c.orders_status_name)).all()
            return {str(name).casefold(): (int(sid), str(name)) for sid, name in rows}

        if conn is not None:
            result = read(conn)
        else:
            with self.engine.connect() as c:
                result = read(c)
        with self._status_lock:
            self._status_cache = (now, result)
        return result

    def status_names(self, refresh: bool = False) -> list[str] | None:
        """The known status names (`refresh`: read now); when the database cannot be asked now,
        the cached ones, or None if there are none."""
        cached = self._status_cache
        if self.recently_unavailable():
            return [name for _sid, name in cached[1].values()] if cached else None
        try:
            return [name for _sid, name in self.statuses(refresh=refresh).values()]
        except sa.exc.SQLAlchemyError:
            self.mark_unavailable()
            return [name for _sid, name in cached[1].values()] if cached else None

    # -- the port: reads ------------------------------------------------------------------------
    def _read(self, read, *args):
        try:
            return read(self, *args)
        except sa.exc.SQLAlchemyError as exc:
            raise OpsUnavailable(f"the OnPrintShop database did not answer ({exc.__class__.__name__})") from exc

    def customers(self, ids):
        return self._read(reads.customers_by_ids, ids)

    def orders(self, ids):
        return self._read(reads.orders_by_ids, ids)

    def existing_ids(self, kind, ids):
        return self._read(reads.existing_ids, kind, ids)

    def all_ids(self, kind, since=None, patient: bool = False):  # patient: the API's (429s)
        return self._read(reads.all_ids, kind, since)

    def customer_ids_of_orders(self, order_ids):
        return self._read(reads.customer_ids_of_orders, order_ids)

    def changed_since(self, kind, after, until=None, limit: int = 1000):
        return self._read(reads.changed_since, kind, after, until, limit)

    # -- the port: writes -----------------------------------------------------------------------
    def writer(self, connect_now: bool = False, write_email: bool = False, changes: int = 1,
               ample: bool = False) -> DatabaseWriter:
        """A writer for changes from Zoho (`changes` of them: one transaction holds them all);
        `connect_now` opens its connection at once (before the caller takes a lock that an
        OnPrintShop host slow to connect would otherwise hold). `ample` is the API's (no call limit here)."""
        return DatabaseWriter(self, connect_now, write_email)


class _Transaction:
    """`with ops.begin() as conn:`: BEGIN IMMEDIATE on SQLite so read-then-write is atomic."""

    def __init__(self, ops: OpsDatabase, conn=None):
        self.ops = ops
        self._given = conn
        self._conn = None
        self._tx = None

    def __enter__(self):
        conn = self._given if self._given is not None else self.ops.engine.connect()
        try:
            if self.ops.dialect == "sqlite":
                conn = conn.execution_options(sqlite_begin="IMMEDIATE")
            self._tx = conn.begin()
        except BaseException:
            if self._given is None:
                conn.close()
            raise
        self._conn = conn
        return conn

    def __exit__(self, exc_type, exc, tb):
        try:
            if exc_type is None:
                self._tx.commit()
            else:
                self._tx.rollback()
        finally:
            if self._given is None:
                self._conn.close()
        return False
