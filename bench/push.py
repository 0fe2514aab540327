"""Benchmark of the push queue against Zoho's own ceiling, in the same run (issue 4, "Done when").

10,000 customers, then their 10,000 orders, go through the real worker: gunicorn with
`gunicorn.conf.py` (2 web workers running the background work, GATEWAY_RUN_WORKER=1), a
MariaDB state store and OnPrintShop database, and the fake Zoho answering every call after
300 ms, with a deployment-wide GATEWAY_ZOHO_CONCURRENCY of 5. The fake also answers 429 past
5 calls in flight, so overshooting the cap would show.

The baseline is the most any client can get from Zoho here: concurrency × 100 records per call
/ latency = 5 × 100 / 0.3 s ≈ 1,667 records/s. For each module it prints records/s (first call
arriving at the fake to the last answer), the ratio to that limit (target ≥ 0.8), upsert calls
(target ≤ 101 per 10,000), token refreshes, the most calls the fake saw in flight, and the peak
RSS of the gunicorn workers.

Needs MariaDB/MySQL: BENCH_MYSQL_URL (or TEST_MYSQL_URL), e.g. mysql+pymysql://root@127.0.0.1:3306/
— the databases gw_push_bench_state and gw_push_bench_ops are (re)created there.

    .venv/bin/python bench/push.py [--records 10000] [--latency 0.3] [--concurrency 5]
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from decimal import Decimal

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def server_url(base: str, database: str) -> str:
    import sqlalchemy as sa

    from gateway.settings import normalize_database_url

    url = sa.make_url(normalize_database_url(base))
    admin = sa.create_engine(url.set(database=""))
    with admin.begin() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {database}")
        conn.exec_driver_sql(f"CREATE DATABASE {database} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    admin.dispose()
    return url.set(database=database).render_as_string(hide_password=False)


def worker_rss_kib(master_pid: int) -> int:
    """Peak resident set (VmHWM) of the master's children, the largest one, in KiB."""
    peak = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as fh:
                fields = dict(line.split(":", 1) for line in fh if ":" in line)
        except OSError:
            continue
        if int(fields.get("PPid", "0").strip() or 0) == master_pid and "VmHWM" in fields:
            peak = max(peak, int(fields["VmHWM"].split()[0]))
    return peak


def wait_done(rt, queue, total: int, timeout: float) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        status = queue.status(rt)
        if status["done"] >= total or status["dead"]:
            return
        time.sleep(0.5)
    raise SystemExit(f"bench: the queue did not finish in {timeout:.0f} s: {queue.status(rt)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=10000)
    parser.add_argument("--latency", type=float, default=0.3)
    parser.add_argument("--concurrency", type=int, default=5)
    args = parser.parse_args()
    base = os.environ.get("BENCH_MYSQL_URL") or os.environ.get("TEST_MYSQL_URL")
    if not base:
        raise SystemExit("bench: set BENCH_MYSQL_URL (or TEST_MYSQL_URL) to a MariaDB/MySQL server, "
                         "e.g. mysql+pymysql://root@127.0.0.1:3306/")

    from gateway import create_app
    from gateway.ops.database import demo
    from gateway.outbound import queue
    from gateway.simulator import ZohoSimulator
    from gateway.state.migrate import init_db
    from gateway.zoho import connect

    state_url = server_url(base, "gw_push_bench_state")
    ops_url = server_url(base, "gw_push_bench_ops")
    instance = tempfile.mkdtemp(prefix="gw-push-bench-")
    fake = ZohoSimulator().start()
    settings = {"GATEWAY_ENV": "development", "INSTANCE_PATH": instance, "DATABASE_URL": state_url,
                "OPS_DATABASE_URL": ops_url, "ZOHO_ACCOUNTS_URL": fake.url, "ZOHO_API_URL": fake.url,
                "GATEWAY_RUN_WORKER": False, "GATEWAY_ZOHO_CONCURRENCY": args.concurrency}
    app = create_app(settings)
    rt = app.extensions["gateway"]
    init_db(rt.store)
    demo.create(rt.ops, force=True)
    client_id, secret = fake.add_client("us")
    result = connect.configure(rt, data_center="us", client_id=client_id, client_secret=secret,
                                  grant_token=fake.new_grant_code(client_id), account_id=fake.add_account())
    if not result.ok:
        raise SystemExit(f"bench: could not connect to the fake Zoho: {result.message}")

    # The OnPrintShop side: N customers and one order each, all changed a minute ago.
    n = args.records
    stamp = rt.ops.now_local() - dt.timedelta(minutes=1)
    t = rt.ops.tables
    with rt.ops.begin() as conn:
        conn.execute(t["orders_status_history"].delete())  # no demo rows in the figures
        conn.execute(t["orders"].delete())
        conn.execute(t["customers"].delete())
        for start in range(0, n, 2000):
            conn.execute(t["customers"].insert(), [
                dict(customers_id=i, customers_firstname=f"Bench{i}", customers_lastname=f"Customer{i}",
                     customers_email_address=f"bench{i}@example.com", customers_telephone="+1 555 0100",
                     customers_company=None, date_account_created=stamp, last_modified=stamp)
                for i in range(start + 1, min(n, start + 2000) + 1)])
        for start in range(0, n, 2000):
            conn.execute(t["orders"].insert(), [
                dict(orders_id=i, customers_id=i, orders_status_id=1 + i % 6, payment_status="Paid",
                     order_total=Decimal("99.90"), currency="USD", date_purchased=stamp, last_modified=stamp)
                for i in range(start + 1, min(n, start + 2000) + 1)])

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "GATEWAY_ENV": "development", "GATEWAY_INSTANCE_PATH": instance, "DATABASE_URL": state_url,
           "OPS_DATABASE_URL": ops_url, "ZOHO_ACCOUNTS_URL": fake.url, "ZOHO_API_URL": fake.url,
           "GATEWAY_RUN_WORKER": "1", "GATEWAY_ZOHO_CONCURRENCY": str(args.concurrency), "GATEWAY_POLL_SECONDS": "0",
           "WEB_CONCURRENCY": "2", "GUNICORN_BIND": f"127.0.0.1:{port}"}
    log = tempfile.NamedTemporaryFile("w", delete=False, prefix="gw-push-bench-", suffix=".log")
    gunicorn = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "gunicorn"), "wsgi:app"], cwd=REPO,
                                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    fake.upsert_latency = args.latency  # each upsert answers after 300 ms in all, processing included
    fake.concurrency_limit = args.concurrency
    limit = args.concurrency * 100 / args.latency
    rows = []
    try:
        time.sleep(2)  # let the workers boot before the clock starts: the fake measures from the first call
        for module, _what in (("Contacts", "customers"), ("Deals", "orders")):
            fake.max_in_flight = 0
            refreshes = fake.calls["oauth.refresh"]
            queue.enqueue(rt, module, range(1, n + 1))
            wait_done(rt, queue, n if module == "Contacts" else 2 * n, timeout=60 + 4 * n / limit * 3)
            first, last = fake.upsert_span[module]
            rate = n / (last - first)
            rows.append((module, rate, rate / limit, fake.upsert_calls[module], fake.calls["oauth.refresh"] - refreshes,
                         fake.max_in_flight))
        rss = worker_rss_kib(gunicorn.pid)
    finally:
        os.killpg(gunicorn.pid, signal.SIGTERM)
        gunicorn.wait(60)
        fake.stop()
    status = queue.status(rt)

    print(f"push benchmark: {n} customers then {n} orders, 2 gunicorn workers, MariaDB state store, "
          f"fake Zoho at {args.latency * 1000:.0f} ms, concurrency {args.concurrency}")
    print(f"limit (concurrency x 100 / latency): {limit:.0f} records/s")
    print(f"{'module':<9} {'records/s':>10} {'ratio':>6} {'calls':>6} {'refreshes':>9} {'max in flight':>13}")
    for module, rate, ratio, calls, refreshes, in_flight in rows:
        print(f"{module:<9} {rate:>10.0f} {ratio:>6.2f} {calls:>6} {refreshes:>9} {in_flight:>13}")
    print(f"429 answers from the fake: {fake.calls['429 TOO_MANY_REQUESTS']}; jobs done {status['done']}, dead {status['dead']}")
    print(f"peak RSS of a gunicorn worker: {rss / 1024:.0f} MiB")
    print("machine load average (1, 5, 15 min) at the end: " + ", ".join(f"{x:.1f}" for x in os.getloadavg())
          + f" on {os.cpu_count()} cores (the fake Zoho, MariaDB and gunicorn share them)")
    ok = all(ratio >= 0.8 and calls <= 101 for _m, _r, ratio, calls, _x, _y in rows) and status["dead"] == 0
    print("targets (>= 0.8 of the limit, <= 101 calls per module, none dead):", "met" if ok else "NOT met")
    rt.close()


if __name__ == "__main__":
    main()
