"""Shared fixtures: real apps built through the factory, real databases, a fake Zoho.

- `make_app(**settings)` builds an app in development mode in a temporary instance folder,
  with the gateway tables created by `init_db` (on the default SQLite file, a copy of one made by
  `init_db` once per session); `app`, `client` and `runner` are the default one.
- `state_db_url` runs a test against each state store: SQLite always, MariaDB with
  TEST_MYSQL_URL, PostgreSQL with TEST_PG_URL (skipped with the reason otherwise).
- `ops_db_url` does the same for the OnPrintShop database (SQLite, MariaDB).
- `fake_zoho` is the Zoho simulator served on a loopback port; `zoho_settings` points an app at it.
- `admin` logs a client in through the real login form.
- `gateway_logs` captures everything the gateway logs, for "no secret in the logs" checks.
- `wait_until(condition, ...)` waits for a condition with a deadline (never for a guessed time);
  `LockWaiters(conn)` tells whether another transaction is queued behind `conn`'s locks.
- `serving(build)` serves the app `build(url)` makes over real HTTP on a loopback port.
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import shutil
import threading
import time

import pytest
import sqlalchemy as sa
from werkzeug.serving import make_server

from gateway import create_app
from gateway.state import Store
from gateway.simulator import ZohoSimulator
from gateway.state.migrate import init_db
from gateway.state.tables import metadata
from tests.fakeops import FakeOps

ADMIN_PASSWORD = "correct horse battery staple"


def _server_url(env_name: str, what: str) -> str:
    url = os.environ.get(env_name)
    if not url:
        pytest.skip(f"{env_name} is not set: {what} tests skipped")
    return url


def mysql_scheme() -> str:
    """The MySQL driver the MariaDB tests use ("mysql+pymysql" or "mysql+mysqldb"): TEST_MYSQL_URL's
    (CI runs them with each), else the one the gateway picks for mysql:// URLs."""
    from gateway.settings import normalize_database_url

    return normalize_database_url(os.environ.get("TEST_MYSQL_URL") or "mysql://localhost/test").split("://", 1)[0]


def mysql_error(engine: sa.Engine, code: int, message: str) -> Exception:
    """The OperationalError the engine's own MySQL driver raises for `code` (PyMySQL's and
    mysqlclient's are different classes, and SQLAlchemy wraps only its driver's)."""
    return engine.dialect.loaded_dbapi.OperationalError(code, message)


def pytest_collection_modifyitems(items):
    """Mark `mariadb` every test run against MariaDB through a parametrized database fixture (its
    id says "mysql") or the pool tests' engines: CI runs them again with the other MySQL driver.
    Tests that reach MariaDB otherwise carry the mark themselves."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        if (callspec is not None and "mysql" in callspec.id.split("-")) or "mysql_engines" in item.fixturenames:
            item.add_marker(pytest.mark.mariadb)


def reset_gateway_tables(url: str) -> None:
    """Drop every gateway table in a shared test database (its migration version table and any
    gw_ table of another schema revision too), so each test starts empty."""
    engine = sa.create_engine(url)
    try:
        metadata.drop_all(engine, checkfirst=True)
        with engine.begin() as conn:
            for name in sa.inspect(conn).get_table_names():
                if name.startswith("gw_"):
                    sa.Table(name, sa.MetaData()).drop(conn)
    finally:
        engine.dispose()


def drop_tables(url: str, names) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            if engine.dialect.name == "mysql":
                conn.exec_driver_sql("SET FOREIGN_KEY_CHECKS = 0")
            for name in names:
                conn.exec_driver_sql(f"DROP TABLE IF EXISTS {name}")
            if engine.dialect.name == "mysql":
                conn.exec_driver_sql("SET FOREIGN_KEY_CHECKS = 1")
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", "mysql", "postgresql"])
def state_db_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/state.db"
    if request.param == "mysql":
        url = _server_url("TEST_MYSQL_URL", "MariaDB state store")
    else:
        url = _server_url("TEST_PG_URL", "PostgreSQL state store")
    from gateway.settings import normalize_database_url

    url = normalize_database_url(url)
    reset_gateway_tables(url)
    return url


OPS_TABLES = ("orders_status_history", "orders", "orders_status", "customers")


@pytest.fixture(params=["sqlite", "mysql"])
def ops_db_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/ops.db"
    from gateway.settings import normalize_database_url

    url = normalize_database_url(_server_url("TEST_MYSQL_URL", "MariaDB OnPrintShop database"))
    drop_tables(url, OPS_TABLES)
    return url


@pytest.fixture(scope="session")
def state_template(tmp_path_factory):
    """A SQLite state store made by `init_db` once per session, for `make_app` to copy."""
    path = tmp_path_factory.mktemp("state-template") / "state.db"
    store = Store(f"sqlite:///{path}")
    try:
        init_db(store)
    finally:
        store.dispose()
    assert not os.path.exists(f"{path}-wal"), "the template's last commits are still in its WAL file"
    return path


@pytest.fixture
def make_app(tmp_path, state_template):
    apps = []

    def build(**settings):
        default_state = tmp_path / "state.db"
        config = {
            "GATEWAY_ENV": "development",
            "INSTANCE_PATH": str(tmp_path / "instance"),
            "DATABASE_URL": f"sqlite:///{default_state}",
            "OPS_DATABASE_URL": f"sqlite:///{tmp_path}/ops.db",
            "TESTING": True,
            "GATEWAY_RUN_WORKER": False,
            "RATELIMIT_ENABLED": False,
        }
        config.update(settings)
        if config["DATABASE_URL"] == f"sqlite:///{default_state}" and not default_state.exists():
            shutil.copyfile(state_template, default_state)  # what init_db would make, in a tenth of the time
        app = create_app(config)
        init_db(app.extensions["gateway"].store)  # still run: on the copy it finds the newest revision
        apps.append(app)
        return app

    yield build
    for app in apps:
        app.extensions["gateway"].close()


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def fake_zoho():
    fake = ZohoSimulator().start()
    yield fake
    fake.stop()


@pytest.fixture
def fake_ops():
    """OnPrintShop's hosted GraphQL API, faked on loopback (tests/fakeops)."""
    fake = FakeOps().start()
    yield fake
    fake.stop()


@contextlib.contextmanager
def serving(build):
    """Serve the app `build(url)` makes (it may use its own URL) on a free loopback port with
    Werkzeug's threaded server; yields (url, app)."""
    apps = []
    server = make_server("127.0.0.1", 0, lambda environ, start_response: apps[0](environ, start_response), threaded=True)
    url = f"http://127.0.0.1:{server.server_port}"
    apps.append(build(url))
    thread = threading.Thread(target=server.serve_forever, name="live-gateway", daemon=True)
    thread.start()
    try:
        yield url, apps[0]
    finally:
        server.shutdown()
        thread.join(timeout=10)


@pytest.fixture
def zoho_settings(fake_zoho):
    """Settings that point an app at the fake Zoho."""
    return {"ZOHO_ACCOUNTS_URL": fake_zoho.url, "ZOHO_API_URL": fake_zoho.url}


CSRF_RE = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


def csrf_token_from(html: str) -> str:
    match = CSRF_RE.search(html)
    assert match, "the page has no CSRF token field"
    return match.group(1)


class AdminSession:
    """Drives the admin pages as a person would: through the login form."""

    def __init__(self, app, client):
        self.app = app
        self.client = client

    def set_password(self, password: str = ADMIN_PASSWORD) -> None:
        from gateway.admin.auth import store_password as store_admin_password

        store_admin_password(self.app.extensions["gateway"], password)

    def login(self, password: str = ADMIN_PASSWORD, set_password: bool = True):
        if set_password:
            self.set_password(password)
        page = self.client.get("/admin/login")
        return self.client.post(
            "/admin/login", data={"password": password, "csrf_token": csrf_token_from(page.get_data(as_text=True))}
        )

    def csrf(self, path: str = "/admin/") -> str:
        return csrf_token_from(self.client.get(path).get_data(as_text=True))

    def post(self, path: str, data: dict, page: str = "/admin/", **kwargs):
        data = dict(data)
        data.setdefault("csrf_token", self.csrf(page))
        return self.client.post(path, data=data, **kwargs)


def rt_of(app):
    """The app's Runtime (state store, vault, OnPrintShop database, Zoho client)."""
    return app.extensions["gateway"]


def make_dead_job(rt, module, ops_id, error):
    """A job the worker gave up on, made through the queue's own functions; returns its id."""
    from gateway.outbound import queue
    from gateway.state import new_holder_id

    queue.enqueue(rt, module, [ops_id])
    holder = new_holder_id()
    jobs = [job for job in queue.claim(rt.store, holder, module) if job.ops_id == ops_id]
    with rt.store.begin() as conn:
        queue.bury(conn, holder, [job.id for job in jobs], error)
    queue.release(rt.store, holder)
    return jobs[0].id


def logged_in(app) -> AdminSession:
    """A fresh client of `app`, logged in through the real form."""
    session = AdminSession(app, app.test_client())
    assert session.login().status_code == 302
    return session


@pytest.fixture
def admin(app, client):
    return AdminSession(app, client)


@pytest.fixture
def gateway_logs():
    """Everything the 'gateway' loggers write during the test, as one string (call it)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setLevel(logging.DEBUG)
    logger = logging.getLogger("gateway")
    logger.addHandler(handler)
    previous = logger.level
    logger.setLevel(logging.DEBUG)
    yield stream.getvalue
    logger.removeHandler(handler)
    logger.setLevel(previous)


# -- waiting for conditions, not for time ----------------------------------------------------------
def wait_until(condition, timeout: float = 10.0, interval: float = 0.02, message="the condition"):
    """Call `condition()` every `interval` seconds until it returns something truthy, and return that;
    fail the test when it is still falsy after `timeout` seconds. `message` says what was awaited:
    a string, or a function called at the failure (to show the state then, e.g. a log's tail)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            pytest.fail(f"waited {timeout:g} s for {message() if callable(message) else message}")
        time.sleep(interval)


class LockWaiters:
    """How many other transactions wait for a lock `holder` (a Connection inside its transaction)
    holds: a test holds a lock until another transaction is really queued behind it, not for a
    guessed time. `with LockWaiters(conn) as waiters: wait_until(waiters.count, ...)`.

    - MariaDB/MySQL: the transactions SHOW ENGINE INNODB STATUS lists as waiting for a lock on a
      row of the holder's database (information_schema.innodb_trx leaves some out on MariaDB 10.11:
      a delivery's FOR UPDATE with subqueries waits there unlisted); in a test's own database only
      the holder holds locks.
    - PostgreSQL: pg_stat_activity, waiting for a Lock that pg_blocking_pids says the holder's
      backend holds.
    - SQLite has no lock table: a statement that needs the write lock (BEGIN IMMEDIATE, INSERT,
      UPDATE, DELETE) started on another connection of the holder's engine and not finished, which
      while the holder has the one write lock means it is in SQLite's busy wait. On SQLite make
      this before the waiting transaction starts.
    """

    WRITES = ("BEGIN IMMEDIATE", "BEGIN EXCLUSIVE", "INSERT", "UPDATE", "DELETE", "REPLACE")

    def __init__(self, holder):
        self.engine = holder.engine
        self.dialect = self.engine.dialect.name
        self._running: dict[int, str] = {}
        self._guard = threading.Lock()
        self._listeners = []
        if self.dialect == "sqlite":
            self._holder_dbapi = holder.connection.dbapi_connection
            self._listeners = [("before_cursor_execute", self._started), ("after_cursor_execute", self._finished),
                               ("handle_error", self._failed)]
            for name, listener in self._listeners:
                sa.event.listen(self.engine, name, listener)
        elif self.dialect == "mysql":
            self._database = holder.exec_driver_sql("SELECT DATABASE()").scalar()
        elif self.dialect == "postgresql":
            self._holder_id = holder.exec_driver_sql("SELECT pg_backend_pid()").scalar()
        else:
            raise NotImplementedError(self.dialect)

    def count(self) -> int:
        if self.dialect == "sqlite":
            with self._guard:
                return len(self._running)
        with self.engine.connect() as conn:
            if self.dialect == "mysql":
                status = conn.exec_driver_sql("SHOW ENGINE INNODB STATUS").one()[2]
                return sum(1 for trx in status.split("\n---TRANSACTION ")
                           if "FOR THIS LOCK TO BE GRANTED" in trx and f" of table `{self._database}`." in trx)
            return int(conn.execute(sa.text(
                "SELECT COUNT(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND CAST(:holder AS integer) = ANY(pg_blocking_pids(pid))"), {"holder": self._holder_id}).scalar())

    def _started(self, conn, cursor, statement, *_args):
        if conn.connection.dbapi_connection is not self._holder_dbapi and statement.lstrip().upper().startswith(self.WRITES):
            with self._guard:
                self._running[id(cursor)] = statement

    def _finished(self, _conn, cursor, *_args):
        with self._guard:
            self._running.pop(id(cursor), None)

    def _failed(self, context):
        with self._guard:
            self._running.pop(id(context.cursor), None)

    def close(self) -> None:
        for name, listener in self._listeners:
            sa.event.remove(self.engine, name, listener)
        self._listeners = []

    def __enter__(self):
        return self

    def __exit__(self, *_exc):
        self.close()
        return False
