"""Fixtures for the sync side: a gateway connected to the fake Zoho, with the demo OnPrintShop
database, optionally served over real HTTP so the fake can post Notification API callbacks.

- `sync_app(state_url=None, ops_url=None, serve=False)` builds such an app; the gateway's Zoho
  connection is saved through the real `connection.configure` against the fake accounts server.
- `link(app, module, ops_id, zoho_id)` records that an OnPrintShop row is a Zoho record (as a
  push would), `ops_row(app, table, id)` reads an OnPrintShop row back.
"""
from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa
from werkzeug.serving import make_server

def connect(app, fake) -> None:
    from gateway.zoho import connect as zoho_connect

    account_id = fake.add_account("OnPrintShop customers")
    client_id, client_secret = fake.add_client()
    code = fake.new_grant_code(client_id)
    rt = app.extensions["gateway"]
    with app.app_context():
        result = zoho_connect.configure(rt, data_center="us", client_id=client_id, client_secret=client_secret,
                                      grant_token=code, account_id=account_id)
    assert result.ok, result.message


class LiveServer:
    def __init__(self, app):
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def sync_app(make_app, fake_zoho, zoho_settings):
    servers = []

    def build(state_url=None, ops_url=None, serve=False, **settings):
        config = dict(zoho_settings)
        if state_url:
            config["DATABASE_URL"] = state_url
        if ops_url:
            config["OPS_DATABASE_URL"] = ops_url
        config.update(settings)
        app = make_app(**config)
        rt = app.extensions["gateway"]
        from gateway.ops.database import demo

        demo.create(rt.ops, force=True)
        connect(app, fake_zoho)
        if serve:
            server = LiveServer(app)
            servers.append(server)
            app.config["GATEWAY_PUBLIC_URL"] = server.url
        elif "GATEWAY_PUBLIC_URL" not in settings:
            app.config["GATEWAY_PUBLIC_URL"] = "https://gateway.example.com"
        return app

    yield build
    for server in servers:
        server.stop()


def link(app, module: str, ops_id: int, zoho_id: str) -> None:
    from gateway.sync import links

    rt = app.extensions["gateway"]
    with rt.store.begin() as conn:
        links.save(conn, module, ops_id, zoho_id)


def ops_row(app, table: str, key: int) -> dict:
    rt = app.extensions["gateway"]
    t = rt.ops.tables[table]
    pk = list(t.primary_key.columns)[0]
    with rt.ops.engine.connect() as conn:
        row = conn.execute(sa.select(t).where(pk == key)).mappings().first()
    return dict(row) if row else None


def history(app, order_id: int) -> list[dict]:
    rt = app.extensions["gateway"]
    t = rt.ops.tables["orders_status_history"]
    with rt.ops.engine.connect() as conn:
        rows = conn.execute(sa.select(t).where(t.c.orders_id == order_id).order_by(t.c.orders_status_history_id)).mappings()
        return [dict(r) for r in rows]
