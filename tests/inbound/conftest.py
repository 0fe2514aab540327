"""Fixtures for the inbound tests: an app whose OnPrintShop database holds the demo data."""
from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from gateway.inbound import secrets
from gateway.ops.database import demo


class Gateway:
    """An app with demo OnPrintShop data and a webhook secret; posts as Zoho would."""

    def __init__(self, app):
        self.app = app
        self.rt = app.extensions["gateway"]
        self.client = app.test_client()
        demo.create(self.rt.ops, force=True)
        self.secret = secrets.webhook_secrets(self.rt)["current"]

    def post(self, module: str, params: dict | None = None, *, as_json: bool = False, token: str | None = "default",
             headers: dict | None = None, **kwargs):
        headers = dict(headers or {})
        if token == "default":
            token = self.secret
        if token is not None:
            headers["X-Webhook-Token"] = token
        path = f"/webhooks/zoho/{module}"
        if as_json:
            return self.client.post(path, json=params, headers=headers, **kwargs)
        return self.client.post(path, data=params, headers=headers, **kwargs)

    # -- reading OnPrintShop as a person would check it ---------------------------------------
    def query(self, sql: str, **params):
        with self.rt.ops.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text(sql), params).all()]

    def customer(self, customers_id: int) -> dict:
        with self.rt.ops.engine.connect() as conn:
            row = conn.execute(sa.text("SELECT * FROM customers WHERE customers_id = :i"), {"i": customers_id}).mappings().first()
        return dict(row)

    def order(self, orders_id: int) -> dict:
        with self.rt.ops.engine.connect() as conn:
            row = conn.execute(sa.text("SELECT * FROM orders WHERE orders_id = :i"), {"i": orders_id}).mappings().first()
        return dict(row)

    def history(self, orders_id: int) -> list[tuple]:
        return self.query(
            "SELECT orders_status_id, comments, date_added FROM orders_status_history WHERE orders_id = :i "
            "ORDER BY orders_status_history_id", i=orders_id)

    def snapshot(self) -> dict:
        """Every OnPrintShop table's rows, for 'nothing changed' checks."""
        out = {}
        for table in ("customers", "orders", "orders_status", "orders_status_history"):
            out[table] = self.query(f"SELECT * FROM {table} ORDER BY 1")
        return out


def local(ts: str) -> dt.datetime:
    return dt.datetime.fromisoformat(ts)


@pytest.fixture
def gw(make_app, ops_db_url):
    return Gateway(make_app(OPS_DATABASE_URL=ops_db_url))


@pytest.fixture
def gw_sqlite(make_app):
    return Gateway(make_app())
