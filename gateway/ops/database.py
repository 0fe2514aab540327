"""The connection to the OnPrintShop database (`OPS_DATABASE_URL`) and its time zone.

`OpsDatabase.from_config(config)` opens the engine lazily (nothing connects until used),
loads and validates the mapping (`instance/mapping.toml`), and builds the tables through it.
OnPrintShop keeps naive datetimes in `OPS_TIMEZONE`; `to_local` and `from_local` convert
between those and aware datetimes, so the rest of the gateway only handles aware UTC times.

Connections fail fast (a few seconds) when the server is away, so a webhook can answer
"accepted" instead of hanging; `ping()` says whether it answers now.
"""
from __future__ import annotations

import datetime as dt
import threading
import time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa

from ..errors import ConfigError
from ..store import make_engine
from . import mapping as mapping_module
from .schema import build_tables

CONNECT_TIMEOUT = 3  # seconds: an unreachable OnPrintShop database must not hold a webhook for long
QUERY_TIMEOUT = 10   # seconds, per read or write on a MySQL connection
LOCK_WAIT_SECONDS = 3  # MySQL: give up waiting for a row OnPrintShop's application holds ("busy", error 1205)
STATUS_CACHE_SECONDS = 30
clock = time.time  # now, for reading OnPrintShop's own times; tests set it

# What an error from the OnPrintShop database means (`OpsDatabase.failure_kind`):
# - "unavailable": the database cannot be reached or used now; every record waits (retried
#   without counting, with the database taken for "down" for a moment);
# - "busy": a row lock wait or deadlock; the record is retried soon, not counted, others go on
#   (SQLite's "database is locked" is the whole database's lock: "unavailable");
# - "refused": the database answered and refused this statement (a trigger's SIGNAL, a CHECK
#   constraint, an unknown column): a counted attempt for that record only.
# Every error class that can come from the database; `failure_kind` tells them apart.
DATABASE_ERRORS = (sa.exc.DBAPIError, sa.exc.DisconnectionError, sa.exc.TimeoutError)
# MySQL/MariaDB error numbers: the client cannot connect or lost the connection (2002, 2003,
# 2005, 2006, 2013, 2055), too many connections (1040), server shutting down (1053), connection
# killed (1927). PyMySQL raises OperationalError for these and for many per-statement errors.
MYSQL_UNAVAILABLE = frozenset({1040, 1053, 1927, 2002, 2003, 2005, 2006, 2013, 2055})
MYSQL_BUSY = frozenset({1205, 1213})  # lock wait timeout, deadlock
PG_BUSY = frozenset({"40P01", "40001", "55P03"})


def zone(name: str, setting: str) -> ZoneInfo:
    try:
        return ZoneInfo(str(name))
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"{setting}={name!r} is not an IANA time zone name (e.g. UTC, Europe/Berlin)") from None


def read_wall_clock(naive: dt.datetime, tz, not_after: float) -> dt.datetime:
    """A naive wall-clock time in `tz` as an aware datetime.

    In the hour repeated when clocks go back (01:30 happens twice), the later reading unless it
    is after `not_after` (epoch seconds: a time cannot be of a change still to come), else the
    earlier. A time in the hour skipped when clocks go forward (02:30) never happened on that
    clock; it is read with the offset from before the change (fold=0: 03:30 summer time).
    """
    first = naive.replace(tzinfo=tz, fold=0)
    second = naive.replace(tzinfo=tz, fold=1)
    # fold=1 is the later instant only in a repeated hour; in a skipped one it is the earlier.
    return second if first.timestamp() < second.timestamp() <= not_after else first


class OpsDatabase:
    """The OnPrintShop database: engine, mapping, tables, time zone."""

    def __init__(self, url: str, mapping: mapping_module.Mapping | None = None, timezone: str = "UTC", **engine_kwargs):
        self.url = url
        self.mapping = mapping or mapping_module.Mapping()
        self.timezone = zone(timezone, "OPS_TIMEZONE")
        if url.startswith("mysql"):
            # A database that stops answering mid-query (or a row OnPrintShop keeps locked) must
            # not hold a webhook until gunicorn kills the worker: give up, answer 202, retry later.
            # A row lock wait ends well before the read timeout, as error 1205: that record waits
            # ("busy"), where a read timeout would take the whole database for "down".
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
    def from_config(cls, config) -> "OpsDatabase":
        # With instance_relative_config the Flask config's root_path is the instance folder.
        instance_path = config.get("INSTANCE_PATH") or getattr(config, "root_path", None)
        return cls(
            config["OPS_DATABASE_URL"],
            mapping=mapping_module.load(instance_path),
            timezone=config.get("OPS_TIMEZONE") or "UTC",
        )

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
        """"unavailable", "busy" or "refused" for an error raised by this database (see DATABASE_ERRORS).

        Why: taking a refused statement for an outage retried that record forever, uncounted,
        and parked every other delivery behind it. An OperationalError that no code identifies
        (drivers raise it for connection failures and for many per-statement errors alike), or an
        InterfaceError, is "unavailable" only if the database does not answer a ping now.
        """
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
        # InterfaceError too: PyMySQL's "connection closed", but also sqlite3's "error binding parameter".
        return "refused" if self.ping() else "unavailable"

    def mark_unavailable(self, seconds: float = 2.0) -> None:
        """Remember that a connection just failed: callers skip trying again for a moment."""
        self._unavailable_until = time.monotonic() + seconds

    def recently_unavailable(self) -> bool:
        return time.monotonic() < self._unavailable_until

    def dispose(self) -> None:
        self.engine.dispose()

    def existing_tables(self) -> list[str]:
        """Which of the mapped tables exist (their names in this store)."""
        inspector = sa.inspect(self.engine)
        names = {n.lower() for n in inspector.get_table_names()}
        return [t.name for t in self.tables.values() if t.name.lower() in names]

    def statement(self, name: str, build):
        """A statement built once per database and reused (building Core statements costs more
        than running them): `build(tables)` makes it on first use; values go in as bind parameters."""
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
        """The known status names (`refresh`: read now, not from the cache); when the database
        cannot be asked now, the cached ones, or None if there are none."""
        cached = self._status_cache
        if self.recently_unavailable():
            return [name for _sid, name in cached[1].values()] if cached else None
        try:
            return [name for _sid, name in self.statuses(refresh=refresh).values()]
        except sa.exc.SQLAlchemyError:
            self.mark_unavailable()
            return [name for _sid, name in cached[1].values()] if cached else None

    # -- time ---------------------------------------------------------------------------------------
    def to_local(self, aware: dt.datetime) -> dt.datetime:
        """An aware datetime → the naive OnPrintShop datetime (OPS_TIMEZONE), to the second."""
        if aware.tzinfo is None:
            raise ValueError("to_local needs an aware datetime")
        return aware.astimezone(self.timezone).replace(tzinfo=None, microsecond=0)

    def from_local(self, naive: dt.datetime, now: float | None = None) -> dt.datetime:
        """A naive OnPrintShop datetime (OPS_TIMEZONE) → an aware UTC datetime.

        In the hour repeated when clocks go back, the later reading that is not after `now`
        (default: the clock). Why: this is the record's last change for "last writer wins". Read
        as the earlier instant, a store edit at 01:30 of the second pass would look an hour older
        and a Zoho change made before it, delivered after it, would overwrite it without a trace;
        read as the later one, the worst case is a Zoho change answered "stale" (and shown as such),
        and only if it is applied more than an hour after the row's first-pass change. A reading
        still ahead of `now` cannot be a change already made, so a first-pass time read during
        the first pass keeps its earlier (right) reading.
        """
        if naive.tzinfo is not None:
            return naive.astimezone(dt.timezone.utc)
        return read_wall_clock(naive, self.timezone, clock() if now is None else now).astimezone(dt.timezone.utc)

    def local_from_epoch(self, epoch: float) -> dt.datetime:
        return self.to_local(dt.datetime.fromtimestamp(epoch, dt.timezone.utc))

    def epoch_from_local(self, naive: dt.datetime, now: float | None = None) -> float:
        return self.from_local(naive, now).timestamp()

    def now_local(self) -> dt.datetime:
        return self.to_local(dt.datetime.now(dt.timezone.utc))


class _Transaction:
    """`with ops.begin() as conn:` — BEGIN IMMEDIATE on SQLite so read-then-write is atomic."""

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

