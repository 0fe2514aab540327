"""Outbound fixtures: a gateway connected to the fake Zoho, over an OnPrintShop database with rows.

`gw` builds the app for each state store (SQLite, MariaDB, PostgreSQL when configured) with an
OnPrintShop database on SQLite or MariaDB, connects it to the fake Zoho through the Zoho
connection's own `configure` (a real grant-token exchange), and offers helpers to add
customers and orders the way OnPrintShop would.
"""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from gateway.ops.database import demo
from gateway.settings import normalize_database_url
from gateway.zoho import connect
from tests.conftest import OPS_TABLES, _server_url, drop_tables, reset_gateway_tables


class Gateway:
    def __init__(self, app, fake):
        self.app = app
        self.rt = app.extensions["gateway"]
        self.fake = fake
        self.account_id = None

    def connect(self) -> None:
        client_id, secret = self.fake.add_client("us")
        self.account_id = self.account_id or self.fake.add_account("OnPrintShop customers")
        result = connect.configure(self.rt, data_center="us", client_id=client_id, client_secret=secret,
                                      grant_token=self.fake.new_grant_code(client_id), account_id=self.account_id)
        assert result.ok, result.message

    def add_customers(self, n: int, modified: dt.datetime | None = None, prefix: str = "c") -> list[int]:
        t = self.rt.ops.tables["customers"]
        stamp = modified or (self.rt.ops.now_local() - dt.timedelta(minutes=5))
        with self.rt.ops.begin() as conn:
            start = conn.execute(t.select().with_only_columns(t.c.customers_id).order_by(t.c.customers_id.desc()).limit(1)).scalar() or 0
            rows = [dict(customers_firstname=f"First{start + k}", customers_lastname=f"Last{start + k}",
                         customers_email_address=f"{prefix}{start + k}@example.com", customers_telephone=None,
                         customers_company=None, date_account_created=stamp, last_modified=stamp)
                    for k in range(1, n + 1)]
            conn.execute(t.insert(), rows)
            return [int(i) for i in conn.execute(
                t.select().with_only_columns(t.c.customers_id).where(t.c.customers_id > start).order_by(t.c.customers_id)).scalars()]

    def add_orders(self, customer_ids, status_id: int = 1, modified: dt.datetime | None = None) -> list[int]:
        t = self.rt.ops.tables["orders"]
        stamp = modified or (self.rt.ops.now_local() - dt.timedelta(minutes=5))
        with self.rt.ops.begin() as conn:
            start = conn.execute(t.select().with_only_columns(t.c.orders_id).order_by(t.c.orders_id.desc()).limit(1)).scalar() or 0
            conn.execute(t.insert(), [dict(customers_id=c, orders_status_id=status_id, payment_status="Unpaid",
                                           order_total=Decimal("12.50"), currency="USD", date_purchased=stamp,
                                           last_modified=stamp) for c in customer_ids])
            return [int(i) for i in conn.execute(
                t.select().with_only_columns(t.c.orders_id).where(t.c.orders_id > start).order_by(t.c.orders_id)).scalars()]

    def update_customer(self, customer_id: int, **values) -> None:
        t = self.rt.ops.tables["customers"]
        values.setdefault("last_modified", self.rt.ops.now_local() - dt.timedelta(seconds=30))
        with self.rt.ops.begin() as conn:
            conn.execute(t.update().where(t.c.customers_id == customer_id).values(**values))

    def drain(self, **kwargs) -> int:
        from gateway.outbound import worker

        return worker.drain(self.rt, **kwargs)


@pytest.fixture(params=["sqlite", "mysql", "postgresql"])
def databases(request, tmp_path):
    """(state store URL, OnPrintShop URL): both SQLite; both MariaDB; PostgreSQL state + SQLite OnPrintShop."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/state.db", f"sqlite:///{tmp_path}/ops.db"
    if request.param == "mysql":
        url = normalize_database_url(_server_url("TEST_MYSQL_URL", "MariaDB"))
        reset_gateway_tables(url)
        drop_tables(url, OPS_TABLES)
        return url, url
    url = normalize_database_url(_server_url("TEST_PG_URL", "PostgreSQL state store"))
    reset_gateway_tables(url)
    return url, f"sqlite:///{tmp_path}/ops.db"


@pytest.fixture
def gw(make_app, databases, fake_zoho, zoho_settings):
    state_url, ops_url = databases
    app = make_app(DATABASE_URL=state_url, OPS_DATABASE_URL=ops_url, **zoho_settings)
    gateway = Gateway(app, fake_zoho)
    demo.create(gateway.rt.ops, force=True)  # the demo rows stay; tests add their own
    gateway.connect()
    return gateway


@pytest.fixture
def gw_sqlite(make_app, fake_zoho, zoho_settings):
    """The same on SQLite only (for tests about one process's behaviour, not the database)."""
    app = make_app(**zoho_settings)
    gateway = Gateway(app, fake_zoho)
    demo.create(gateway.rt.ops, force=True)
    gateway.connect()
    return gateway


@pytest.fixture
def runner_for():
    return lambda app: app.test_cli_runner()


class Gunicorn:
    def __init__(self, proc, log_path):
        self.proc = proc
        self.log_path = log_path

    def output(self) -> str:
        with open(self.log_path) as fh:
            return fh.read()[-4000:]

    def stop(self) -> None:
        import os
        import signal

        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except Exception:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


def gunicorn(env: dict, workers: int = 2) -> Gunicorn:
    """A real gunicorn (gunicorn.conf.py) running the background work in its web workers."""
    import os
    import socket
    import subprocess
    import sys
    import tempfile

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    full_env = {**os.environ, "GATEWAY_ENV": "development", "GATEWAY_RUN_WORKER": "1", "WEB_CONCURRENCY": str(workers),
                "GUNICORN_BIND": f"127.0.0.1:{port}", **env}
    log = tempfile.NamedTemporaryFile("w", delete=False, suffix=".log")
    proc = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "gunicorn"), "wsgi:app"], cwd=root, env=full_env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    return Gunicorn(proc, log.name)
