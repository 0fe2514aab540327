"""Where a Zoho webhook delivery spends its time, in-process (no gunicorn, no network client).

Builds the app through the factory in production mode (rate limiter on, as in bench/webhook.py),
with the state store and the OnPrintShop database (demo data, `gateway.ops.demo`, plus 200
orders and 200 customers) on a MariaDB/MySQL database, warms up with one delivery per record (the
first one links it), then posts distinct valid updates (new values and a later modified_time each)
through a real WSGI call (Werkzeug's test client; its own cost is included). Prints:
  - CPU time per request (user + system of this process: the database server's work is not
    counted), timed in chunks: the median chunk and the quickest (on a shared machine the
    quickest is the least disturbed), and wall time per request;
  - SQL statements per delivery on each engine, counted in a run of their own with a
    `before_cursor_execute` listener on the state store's engines (`state`, and `state-write`,
    its READ COMMITTED pool on MariaDB) and the OnPrintShop engine (`ops`), and each statement;
  - a cProfile of one more chunk, timed in CPU time, top 25 by cumulative and by own time
    (PROFILE_DUMP=file also writes the raw profile for pstats).
Figures only, no pass/fail.

    BENCH_MYSQL_URL=mysql://root@127.0.0.1:3306/gw_perf .venv/bin/python bench/profile_webhook.py \
        [-n 2000] [--module deals|contacts] [--state mysql|sqlite]

The database named in the URL (default gw_perf, created if missing) holds both stores; its gateway tables and
OnPrintShop demo tables are dropped and recreated. `--state sqlite` keeps the state store in a
temporary SQLite file instead.
"""
from __future__ import annotations

import argparse
import base64
import collections
import cProfile
import datetime as dt
import os
import pstats
import shutil
import sys
import tempfile
import time
import urllib.parse

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

ORDERS = 200
STAGES = ("Pending", "Order Processing", "Printing", "Shipped", "Order Completed", "Cancelled")


def database_url() -> str:
    url = os.environ.get("BENCH_MYSQL_URL") or os.environ.get("TEST_MYSQL_URL")
    if not url:
        sys.exit("set BENCH_MYSQL_URL (or TEST_MYSQL_URL) to a MariaDB database, e.g. "
                 "mysql+pymysql://root@127.0.0.1:3306/gw_perf")
    from gateway.settings import normalize_database_url

    parts = urllib.parse.urlsplit(normalize_database_url(url, "BENCH_MYSQL_URL"))  # mysql://: the gateway's driver
    name = parts.path.strip("/") or "gw_perf"
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, f"/{name}", "charset=utf8mb4", ""))


def build(state: str, workdir: str):
    import sqlalchemy as sa
    from cryptography.fernet import Fernet

    from gateway import create_app
    from gateway.inbound import secrets
    from gateway.ops.database import demo
    from gateway.state.migrate import VERSION_TABLE, init_db
    from gateway.state.tables import metadata

    url = database_url()
    parts = urllib.parse.urlsplit(url)
    server = sa.create_engine(urllib.parse.urlunsplit((parts.scheme, parts.netloc, "/", parts.query, "")))
    with server.begin() as conn:  # the database itself may not exist yet
        conn.exec_driver_sql(f"CREATE DATABASE IF NOT EXISTS `{parts.path.strip('/')}` CHARACTER SET utf8mb4")
    server.dispose()
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("SET FOREIGN_KEY_CHECKS = 0")
        for name in ("orders_status_history", "orders", "orders_status", "customers"):
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {name}")
        conn.exec_driver_sql("SET FOREIGN_KEY_CHECKS = 1")
    metadata.drop_all(engine, checkfirst=True)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {VERSION_TABLE}")  # else init_db finds it up to date
    engine.dispose()

    state_url = url if state == "mysql" else f"sqlite:///{workdir}/state.db"
    app = create_app({
        "GATEWAY_ENV": "production", "INSTANCE_PATH": os.path.join(workdir, "instance"),
        "SECRET_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
        "GATEWAY_FERNET_KEYS": Fernet.generate_key().decode(),
        "DATABASE_URL": state_url, "OPS_DATABASE_URL": url,
        "GATEWAY_WEBHOOK_RATE_LIMIT": "1000000 per minute", "GATEWAY_POLL_SECONDS": 0,
        "GATEWAY_LOG_FORMAT": "text", "GATEWAY_RUN_WORKER": False,
    })
    rt = app.extensions["gateway"]
    init_db(rt.store)
    demo.create(rt.ops, force=True)
    secret = secrets.webhook_secrets(rt)["current"]
    long_ago = dt.datetime(2020, 1, 1)
    with rt.ops.engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO orders (customers_id, orders_status_id, payment_status, order_total, currency, date_purchased, "
            "last_modified) VALUES (1, 1, 'Unpaid', 10.00, 'USD', :t, :t)"), [{"t": long_ago}] * ORDERS)
        first = conn.execute(sa.text("SELECT MIN(orders_id) FROM orders WHERE date_purchased = :t"), {"t": long_ago}).scalar()
        conn.execute(sa.text(
            "INSERT INTO customers (customers_firstname, customers_lastname, customers_email_address, "
            "date_account_created, last_modified) VALUES ('Bench', 'Customer', :e, :t, :t)"),
            [{"e": f"bench{n}@example.com", "t": long_ago} for n in range(ORDERS)])
        first_customer = conn.execute(sa.text("SELECT MIN(customers_id) FROM customers WHERE date_account_created = :t"),
                                      {"t": long_ago}).scalar()
    return app, rt, secret, {"deals": int(first), "contacts": int(first_customer)}


class StatementCounter:
    """Counts statements sent to each engine (state store read/write pools, OnPrintShop)."""

    def __init__(self, engines: dict):
        import sqlalchemy as sa

        self.counts: collections.Counter = collections.Counter()
        self.texts: collections.Counter = collections.Counter()
        self.on = False
        self.listeners = []
        for label, engine in engines.items():
            listener = self._listener(label)
            sa.event.listen(engine, "before_cursor_execute", listener)
            self.listeners.append((engine, listener))

    def close(self):
        import sqlalchemy as sa

        for engine, listener in self.listeners:
            sa.event.remove(engine, "before_cursor_execute", listener)

    def _listener(self, label):
        def count(_conn, _cursor, statement, _params, _context, _executemany):
            if self.on:
                self.counts[label] += 1
                self.texts[(label, " ".join(statement.split())[:110])] += 1
        return count


def deliveries(module: str, first_id: int, start_round: int, n: int):
    """n distinct valid updates, each record in turn, later each round: a Deal gets a new stage and
    payment status; a Contact a new first and last name and phone, its e-mail sent unchanged (as
    Zoho's webhook sends every mapped field)."""
    base_ms = int(time.time() - 86400) * 1000
    out = []
    for step in range(n):
        record = first_id + step % ORDERS
        round_ = start_round + step // ORDERS
        when = str(base_ms + (round_ + 1) * 1000)
        if module == "deals":
            params = {"id": f"90{record}", "ops_id": str(record), "stage": STAGES[(round_ + 1) % len(STAGES)],
                      "payment_status": "Paid" if round_ % 2 else "Unpaid", "modified_time": when}
        else:
            params = {"id": f"50{record}", "ops_id": str(record), "email": f"bench{record - first_id}@example.com",
                      "first_name": f"Round {round_}", "last_name": f"Customer {record}",
                      "phone": f"+1 555 {round_:04d}", "modified_time": when}
        out.append((module, urllib.parse.urlencode(params)))
    return out


def post_all(client, secret: str, bodies) -> collections.Counter:
    statuses: collections.Counter = collections.Counter()
    headers = {"Content-Type": "application/x-www-form-urlencoded", "X-Webhook-Token": secret}
    for module, body in bodies:
        response = client.post(f"/webhooks/zoho/{module}", data=body, headers=headers)
        statuses[response.status_code] += 1
    return statuses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=2000, help="deliveries timed (the statement count and the profile take n/chunks each)")
    parser.add_argument("--state", choices=("mysql", "sqlite"), default="mysql")
    parser.add_argument("--module", choices=("deals", "contacts"), default="deals", help="which endpoint to post to")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--chunks", type=int, default=5, help="timed chunks (their median and quickest are shown)")
    args = parser.parse_args()

    import logging

    workdir = tempfile.mkdtemp(prefix="profile-webhook-")
    app, rt, secret, first_ids = build(args.state, workdir)
    first_id = first_ids[args.module]
    logging.getLogger("gateway.access").setLevel(logging.INFO)
    sink = logging.FileHandler(os.path.join(workdir, "gateway.log"))  # the access lines are formatted, as in production
    logger = logging.getLogger("gateway")
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    sink.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger.addHandler(sink)

    engines = {"state": rt.store.engine, "ops": rt.ops.engine}
    if rt.store.dialect == "mysql":
        engines["state-write"] = rt.store.write_engine
    client = app.test_client()

    round_ = 0
    warm = deliveries(args.module, first_id, round_, ORDERS)  # warm-up: pools, caches, every record once
    round_ += 1
    post_all(client, secret, warm)

    # CPU time, without the counting listener: the machine may be shared, so the run is cut in
    # chunks and the quickest chunk is shown with the median (less noise from other processes).
    n = args.n
    chunks = max(1, args.chunks)
    per_chunk = max(1, n // chunks)
    figures, statuses = [], collections.Counter()
    for _ in range(chunks):
        bodies = deliveries(args.module, first_id, round_, per_chunk)
        round_ += (per_chunk + ORDERS - 1) // ORDERS
        times0, wall0 = os.times(), time.perf_counter()
        statuses.update(post_all(client, secret, bodies))
        times1, wall = os.times(), time.perf_counter() - wall0
        user, system = times1.user - times0.user, times1.system - times0.system
        figures.append(((user + system) * 1000 / per_chunk, user * 1000 / per_chunk, system * 1000 / per_chunk,
                        wall * 1000 / per_chunk))
    figures.sort()
    best, median = figures[0], figures[len(figures) // 2]
    print(f"state store: {rt.store.dialect}; OnPrintShop: {rt.ops.dialect} ({rt.ops.engine.dialect.driver}); {per_chunk * chunks} {args.module} deliveries "
          f"in {chunks} chunks; answers {dict(statuses)}")
    print(f"CPU per request: median {median[0]:.3f} ms (user {median[1]:.3f}, system {median[2]:.3f}), "
          f"quickest chunk {best[0]:.3f} ms; wall per request (median chunk) {median[3]:.3f} ms, one thread")

    # Statements, counted in a run of their own.
    bodies = deliveries(args.module, first_id, round_, per_chunk)
    round_ += (per_chunk + ORDERS - 1) // ORDERS
    counter = StatementCounter(engines)
    counter.on = True
    post_all(client, secret, bodies)
    counter.close()
    n = per_chunk
    total = sum(counter.counts.values())
    print(f"SQL statements per delivery: {total / n:.2f} ("
          + ", ".join(f"{k} {v / n:.2f}" for k, v in sorted(counter.counts.items())) + ")")
    for (label, text), count in sorted(counter.texts.items(), key=lambda kv: -kv[1]):
        print(f"  {count / n:5.2f} x {label:<11} {text}")

    bodies = deliveries(args.module, first_id, round_, n)  # one chunk's worth, profiled
    profiler = cProfile.Profile(time.process_time)  # CPU time: waiting for the database is not counted
    profiler.enable()
    post_all(client, secret, bodies)
    profiler.disable()
    if os.environ.get("PROFILE_DUMP"):
        profiler.dump_stats(os.environ["PROFILE_DUMP"])
    stats = pstats.Stats(profiler)
    stats.strip_dirs()
    for key in ("cumulative", "tottime"):
        print(f"\n-- cProfile, top {args.top} by {key} ({n} requests) --")
        stats.sort_stats(key).print_stats(args.top)
    rt.close()
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
