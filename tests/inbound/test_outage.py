"""The outage drill: the OnPrintShop MariaDB goes away, deliveries are accepted, nothing is lost.

A private `mariadbd` (own data folder, socket and port) is started and stopped by the test, so
the connection is really cut. 200 Deal updates arrive while it is down (answered 202, split
across two app objects to include a gateway restart), then a separate `flask worker` process
is started while the database is still down (its re-applier backs off), the database comes
back, and every update must be applied, per order in modified_time order, none lost.
"""
from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import sys
import time

import pytest
import sqlalchemy as sa

from gateway.inbound import reports, secrets
from gateway.ops.database import demo
from tests.conftest import mysql_scheme, wait_until

MARIADBD = shutil.which("mariadbd", path="/usr/sbin:/usr/bin:/usr/local/sbin:/usr/local/bin")
INSTALL_DB = shutil.which("mariadb-install-db") or shutil.which("mysql_install_db")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

pytestmark = [pytest.mark.slow, pytest.mark.mariadb]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivateMariaDB:
    """A throw-away MariaDB server the test can stop and start again."""

    def __init__(self, folder):
        self.folder = folder
        self.datadir = folder / "data"
        self.port = _free_port()
        self.process = None
        subprocess.run([INSTALL_DB, "--no-defaults", f"--datadir={self.datadir}", "--skip-test-db",
                        "--auth-root-authentication-method=normal"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)

    @property
    def url(self) -> str:
        return f"{mysql_scheme()}://root@127.0.0.1:{self.port}/ops?charset=utf8mb4"

    def start(self) -> None:
        args = [MARIADBD, "--no-defaults", f"--datadir={self.datadir}", f"--socket={self.folder}/mysqld.sock",
                f"--port={self.port}", "--bind-address=127.0.0.1", "--skip-grant-tables", "--skip-log-bin",
                "--innodb-buffer-pool-size=16M", f"--pid-file={self.folder}/mysqld.pid"]
        if os.geteuid() == 0:
            args.append("--user=root")
        self.process = subprocess.Popen(args, stdout=open(self.folder / "server.log", "ab"), stderr=subprocess.STDOUT)
        wait_until(self.accepting, timeout=60, interval=0.1,
                   message=f"the private mariadbd to accept connections (see {self.folder / 'server.log'})")
        engine = sa.create_engine(f"{mysql_scheme()}://root@127.0.0.1:{self.port}/")
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE DATABASE IF NOT EXISTS ops CHARACTER SET utf8mb4")
        engine.dispose()

    def accepting(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=60)
        self.process = None


@pytest.fixture
def private_mariadb(tmp_path):
    if not MARIADBD or not INSTALL_DB:
        pytest.skip("mariadbd / mariadb-install-db are not installed: the outage drill needs its own MariaDB server")
    server = PrivateMariaDB(tmp_path / "mariadb")
    server.start()
    yield server
    server.stop()


def _deliveries(count: int = 200, orders=(1, 2, 3, 4)):
    """Distinct Deal updates: per order, every one changes the stage (starting from one the demo order
    does not have), one second apart."""
    stages = [name for _sid, name in demo.DEMO_STATUSES]
    base = int(time.time()) - 2 * count
    out = []
    for n in range(count):
        order = orders[n % len(orders)]
        step = n // len(orders)
        out.append({"id": f"70000{order}", "ops_id": str(order), "stage": stages[(step + order) % len(stages)],
                    "payment_status": "Paid" if step % 2 else "Unpaid", "modified_time": str((base + n) * 1000)})
    random.Random(7).shuffle(out)  # they arrive out of order
    return out


def test_outage_200_deliveries_accepted_then_all_applied_in_order_across_a_restart(make_app, private_mariadb, tmp_path):
    app1 = make_app(OPS_DATABASE_URL=private_mariadb.url)
    rt1 = app1.extensions["gateway"]
    demo.create(rt1.ops, force=True)
    secret = secrets.webhook_secrets(rt1)["current"]
    deliveries = _deliveries()

    private_mariadb.stop()  # the OnPrintShop database is gone
    for app, batch in ((app1, deliveries[:100]), (None, deliveries[100:])):
        if app is None:  # a gateway restart: a fresh app object on the same state store
            rt1.close()
            app = make_app(OPS_DATABASE_URL=private_mariadb.url)
        client = app.test_client()
        for params in batch:
            r = client.post("/webhooks/zoho/deals", data=params, headers={"X-Webhook-Token": secret})
            assert r.status_code == 202, r.get_json()
            assert r.get_json() == {"status": "accepted"}
    rt2 = app.extensions["gateway"]
    assert reports.pending_count(rt2) == 200

    # A separate worker process starts while the database is still down, then it comes back.
    env = dict(os.environ, GATEWAY_ENV="development", GATEWAY_INSTANCE_PATH=app.instance_path,
               DATABASE_URL=app.config["DATABASE_URL"], OPS_DATABASE_URL=private_mariadb.url,
               GATEWAY_POLL_SECONDS="0")
    worker_log = tmp_path / "worker.log"
    worker = subprocess.Popen([sys.executable, "-m", "flask", "--app", "wsgi", "worker"], cwd=REPO, env=env,
                              stdout=open(worker_log, "wb"), stderr=subprocess.STDOUT)
    try:
        # Its re-applier really tried the missing database (and backs off): then nothing is applied.
        wait_until(lambda: "OnPrintShop database unavailable" in worker_log.read_text(), timeout=60, interval=0.1,
                   message=lambda: "the worker's re-applier to find OnPrintShop down: " + worker_log.read_text()[-2000:])
        assert reports.pending_count(rt2) == 200
        private_mariadb.start()
        wait_until(lambda: reports.pending_count(rt2) == 0, timeout=90, interval=0.5,
                   message=lambda: f"every delivery applied ({reports.pending_count(rt2)} still pending): "
                   + worker_log.read_text()[-2000:])
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    assert sorted(row["outcome"] for row in reports.recent(rt2, limit=500)) == ["applied"] * 200

    # Every update is in OnPrintShop, per order in modified_time order.
    engine = sa.create_engine(private_mariadb.url)
    with engine.connect() as conn:
        for order in (1, 2, 3, 4):
            expected = sorted((p for p in deliveries if p["ops_id"] == str(order)), key=lambda p: int(p["modified_time"]))
            history = conn.execute(sa.text(
                "SELECT h.comments FROM orders_status_history h WHERE h.orders_id = :o "
                "AND h.comments LIKE 'Zoho CRM%' ORDER BY h.orders_status_history_id"), {"o": order}).scalars().all()
            assert history == [f"Zoho CRM: Deal {p['id']} moved to stage {p['stage']}" for p in expected]
            status, payment = conn.execute(sa.text(
                "SELECT s.orders_status_name, o.payment_status FROM orders o JOIN orders_status s "
                "ON s.orders_status_id = o.orders_status_id WHERE o.orders_id = :o"), {"o": order}).one()
            assert (status, payment) == (expected[-1]["stage"], expected[-1]["payment_status"])
    engine.dispose()
