"""Hosted-store fixtures: a gateway with OPS_BACKEND=api on the fake OnPrintShop API and the fake
Zoho, connected to both, doing what a person would (change OnPrintShop, poll, drain, post webhooks)."""
from __future__ import annotations

import datetime as dt
import time

import pytest

from gateway.inbound import secrets
from gateway.ops import configure_api
from gateway.outbound import poller, queue, worker
from gateway.settings import normalize_database_url
from gateway.zoho import connect
from tests.conftest import _server_url, reset_gateway_tables


class Hosted:
    def __init__(self, app, zoho, ops):
        self.app = app
        self.rt = app.extensions["gateway"]
        self.zoho = zoho
        self.ops = ops
        self.client = app.test_client()

    def connect(self) -> None:
        client_id, secret = self.zoho.add_client("us")
        self.account_id = self.zoho.add_account("OnPrintShop customers")
        result = connect.configure(self.rt, data_center="us", client_id=client_id, client_secret=secret,
                                   grant_token=self.zoho.new_grant_code(client_id), account_id=self.account_id)
        assert result.ok, result.message
        ops_id, ops_secret = self.ops.add_client()
        result = configure_api(self.rt, url=self.ops.url, client_id=ops_id, client_secret=ops_secret)
        assert result.ok, result.message

    def start_feed(self) -> None:
        """The poller's first round: it reads nothing yet, and starts from the day before (what exists is pushed with `push … --all`)."""
        assert poller.poll_once(self.rt, settle=0) == {"customers": 0, "orders": 0}

    def poll(self) -> dict:
        return poller.poll_once(self.rt, settle=0)

    def poll_until(self, table: str, expected: int, seconds: float = 5.0) -> int:
        """Poll until `expected` changed records of `table` were queued (a version stamped in the
        same second as the gateway's own write gets the next second: it may need a round more)."""
        deadline, total = time.monotonic() + seconds, 0
        while total < expected and time.monotonic() < deadline:
            total += self.poll()[table]
        return total

    def drain(self) -> int:
        return worker.drain(self.rt)

    def push_all(self, table: str) -> None:
        """`flask push <table> --all`, as an admin would, then every queued push sent."""
        result = self.app.test_cli_runner().invoke(args=["push", table, "--all"])
        assert result.exit_code == 0, result.output
        self.drain()

    def queued(self) -> int:
        return queue.status(self.rt)["pending"]

    @property
    def secret(self) -> str:
        """The current webhook secret (what Zoho's webhook sends as X-Webhook-Token)."""
        return secrets.webhook_secrets(self.rt)["current"]

    def post(self, module: str, params: dict):
        return self.client.post(f"/webhooks/zoho/{module}", data=params, headers={"X-Webhook-Token": self.secret})

    def deal(self, order_id: int) -> dict:
        return next(r for r in self.zoho.records["Deals"].values() if r["Deal_Name"] == f"OPS Order #{order_id}")

    def contact(self, email: str) -> dict:
        return next(r for r in self.zoho.records["Contacts"].values() if r.get("Email") == email)


def zoho_time(offset: float = 0.0) -> str:
    """A Contact's or Deal's Modified Time `offset` seconds from now (after what the test made in OnPrintShop)."""
    return (dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=offset)).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def hosted_app(make_app, zoho_settings, fake_ops, **settings):
    return make_app(OPS_BACKEND="api", OPS_TIMEZONE="UTC", **zoho_settings, **settings)


@pytest.fixture
def make_hosted(make_app, fake_zoho, zoho_settings, fake_ops):
    """`make_hosted(**settings)`: a hosted gateway with these settings too, connected to both fakes."""
    def build(**settings) -> Hosted:
        gw = Hosted(hosted_app(make_app, zoho_settings, fake_ops, **settings), fake_zoho, fake_ops)
        gw.connect()
        return gw
    return build


@pytest.fixture
def hosted(make_hosted):
    return make_hosted()


@pytest.fixture(params=["sqlite", "mysql", "postgresql"])
def state_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/state.db"
    url = normalize_database_url(_server_url("TEST_MYSQL_URL" if request.param == "mysql" else "TEST_PG_URL",
                                             f"{request.param} state store"))
    reset_gateway_tables(url)
    return url


@pytest.fixture
def hosted_on(make_hosted, state_url):
    """`hosted` on each state store (SQLite, MariaDB, PostgreSQL when configured)."""
    return make_hosted(DATABASE_URL=state_url)
