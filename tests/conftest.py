"""Shared fixtures: real apps built through the factory, real databases, a fake Zoho.

- `make_app(**settings)` builds an app in development mode in a temporary instance folder,
  with the gateway tables created; `app`, `client` and `runner` are the default one.
- `state_db_url` runs a test against each state store: SQLite always, MariaDB with
  TEST_MYSQL_URL, PostgreSQL with TEST_PG_URL (skipped with the reason otherwise).
- `ops_db_url` does the same for the OnPrintShop database (SQLite, MariaDB).
- `fake_zoho` is the Zoho simulator served on a loopback port; `zoho_settings` points an app at it.
- `admin` logs a client in through the real login form.
- `gateway_logs` captures everything the gateway logs, for "no secret in the logs" checks.
- `serving(build)` serves the app `build(url)` makes over real HTTP on a loopback port.
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import threading

import pytest
import sqlalchemy as sa
from werkzeug.serving import make_server

from gateway import create_app
from gateway.simulator import ZohoSimulator
from gateway.state.migrate import init_db
from gateway.state.tables import metadata

ADMIN_PASSWORD = "correct horse battery staple"


def _server_url(env_name: str, what: str) -> str:
    url = os.environ.get(env_name)
    if not url:
        pytest.skip(f"{env_name} is not set: {what} tests skipped")
    return url


def reset_gateway_tables(url: str) -> None:
    """Drop every gateway table in a shared test database, so each test starts empty."""
    engine = sa.create_engine(url)
    try:
        metadata.drop_all(engine, checkfirst=True)
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


@pytest.fixture
def make_app(tmp_path):
    apps = []

    def build(**settings):
        config = {
            "GATEWAY_ENV": "development",
            "INSTANCE_PATH": str(tmp_path / "instance"),
            "DATABASE_URL": f"sqlite:///{tmp_path}/state.db",
            "OPS_DATABASE_URL": f"sqlite:///{tmp_path}/ops.db",
            "TESTING": True,
            "GATEWAY_RUN_WORKER": False,
            "RATELIMIT_ENABLED": False,
        }
        config.update(settings)
        app = create_app(config)
        init_db(app.extensions["gateway"].store)
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
