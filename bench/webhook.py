"""Benchmark of the Deals webhook against two baselines, in the same run (issue 3, "Done when").

Targets, each served by gunicorn with the production settings (`gunicorn.conf.py`: 2 workers,
gthread, GUNICORN_THREADS threads, GATEWAY_ENV=production):
  1. bare-ok      a bare Flask endpoint answering "ok";
  2. bare-commit  a bare Flask endpoint committing one row to the same MariaDB;
  3. webhook      POST /webhooks/zoho/deals: secret check, validation, the durable inbox
                  (committed before the answer) and the update applied to a MariaDB
                  OnPrintShop database (order row + status history row).
16 concurrent clients (keep-alive connections, spread over a few processes) post for a fixed
time; every webhook request is a distinct valid Deal update (a new stage, a later
modified_time). Prints req/s, p50/p99 latency, errors, and the ratios to both baselines, then
checks that every 2xx answer has its committed inbox row.

Needs a MariaDB/MySQL server: BENCH_MYSQL_URL (or TEST_MYSQL_URL), e.g.
mysql+pymysql://root@127.0.0.1:3306/ — databases gw_bench_ops and gw_bench_state are
(re)created there. `--state sqlite` keeps the gateway's state store in SQLite instead.

    .venv/bin/python bench/webhook.py [--seconds 12] [--clients 16] [--state mysql|sqlite]
"""
from __future__ import annotations

import argparse
import base64
import http.client
import multiprocessing
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

ORDERS = 400
STAGES = ("Pending", "Order Processing", "Printing", "Shipped", "Order Completed", "Cancelled")


# -- the two baseline apps (gunicorn loads them with `bench.webhook:bare_ok_app()` etc.) -----------
def bare_ok_app():
    from flask import Flask

    app = Flask("bare_ok")

    @app.post("/ok")
    def ok():
        return "ok"

    return app


def bare_commit_app():
    import sqlalchemy as sa
    from flask import Flask

    app = Flask("bare_commit")
    engine = sa.create_engine(os.environ["BENCH_OPS_URL"], pool_pre_ping=True, pool_size=8)
    rows = sa.Table("bench_rows", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True),
                    sa.Column("body", sa.String(255)), sa.Column("at", sa.Float))

    @app.post("/commit")
    def commit():
        from flask import request

        with engine.begin() as conn:
            conn.execute(rows.insert().values(body=request.get_data(as_text=True)[:255], at=time.time()))
        return "ok"

    return app


# -- setup --------------------------------------------------------------------------------------------
def server_url() -> str:
    url = os.environ.get("BENCH_MYSQL_URL") or os.environ.get("TEST_MYSQL_URL")
    if not url:
        sys.exit("set BENCH_MYSQL_URL (or TEST_MYSQL_URL) to a MariaDB server, e.g. mysql+pymysql://root@127.0.0.1:3306/")
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, "/", "", ""))


def recreate_database(root: str, name: str) -> str:
    import sqlalchemy as sa

    engine = sa.create_engine(root)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
        conn.exec_driver_sql(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
    engine.dispose()
    return root.rstrip("/") + f"/{name}?charset=utf8mb4"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def flask_cli(env: dict, *args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", *args], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        sys.exit(f"flask {' '.join(args)} failed: {result.stderr.strip() or result.stdout.strip()}")
    return result.stdout


def prepare(state: str, workdir: str) -> tuple[dict, str]:
    """Databases, settings and the webhook secret for the gateway under test."""
    from cryptography.fernet import Fernet

    root = server_url()
    ops_url = recreate_database(root, "gw_bench_ops")
    state_url = recreate_database(root, "gw_bench_state") if state == "mysql" else f"sqlite:///{workdir}/state.db"
    env = dict(os.environ,
               GATEWAY_ENV="production", GATEWAY_INSTANCE_PATH=os.path.join(workdir, "instance"),
               SECRET_KEY=base64.urlsafe_b64encode(os.urandom(32)).decode(), GATEWAY_FERNET_KEYS=Fernet.generate_key().decode(),
               DATABASE_URL=state_url, OPS_DATABASE_URL=ops_url, BENCH_OPS_URL=ops_url,
               GATEWAY_WEBHOOK_RATE_LIMIT="1000000 per minute", GATEWAY_POLL_SECONDS="0",
               GATEWAY_LOG_FORMAT="text", PYTHONPATH=REPO)
    os.makedirs(env["GATEWAY_INSTANCE_PATH"], exist_ok=True)
    flask_cli(env, "init-db")
    flask_cli(env, "init-ops-demo", "--force")
    secret = flask_cli(env, "webhook-secret").splitlines()[0].split(" ", 1)[1]

    import datetime as dt

    import sqlalchemy as sa

    engine = sa.create_engine(ops_url)
    with engine.begin() as conn:
        long_ago = dt.datetime(2020, 1, 1)
        conn.execute(sa.text(
            "INSERT INTO orders (customers_id, orders_status_id, payment_status, order_total, currency, date_purchased, "
            "last_modified) VALUES (1, 1, 'Unpaid', 10.00, 'USD', :t, :t)"), [{"t": long_ago}] * ORDERS)
        conn.exec_driver_sql("CREATE TABLE bench_rows (id INTEGER AUTO_INCREMENT PRIMARY KEY, body VARCHAR(255), at DOUBLE)")
        first = conn.execute(sa.text("SELECT MIN(orders_id) FROM orders WHERE date_purchased = :t"), {"t": long_ago}).scalar()
    engine.dispose()
    env["BENCH_FIRST_ORDER"] = str(first)
    return env, secret


class Server:
    def __init__(self, app_spec: str, env: dict, workdir: str, name: str):
        self.port = free_port()
        env = dict(env, GUNICORN_BIND=f"127.0.0.1:{self.port}")
        self.log = open(os.path.join(workdir, f"{name}.log"), "wb")
        self.process = subprocess.Popen(
            [os.path.join(os.path.dirname(sys.executable), "gunicorn"), "-c", os.path.join(REPO, "gunicorn.conf.py"),
             app_spec], cwd=REPO, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/healthz")
                conn.getresponse().read()
                conn.close()
                time.sleep(1.5)  # both workers up
                return
            except OSError:
                if self.process.poll() is not None:
                    sys.exit(f"gunicorn for {name} exited; see {self.log.name}")
                time.sleep(0.2)
        sys.exit(f"gunicorn for {name} did not start; see {self.log.name}")

    def cpu_seconds(self) -> float:
        """CPU time (user + system) used so far by the gunicorn workers of this server."""
        try:
            with open(f"/proc/{self.process.pid}/task/{self.process.pid}/children") as fh:
                workers = [int(pid) for pid in fh.read().split()]
        except OSError:
            return float("nan")
        return sum(process_cpu_seconds(pid) for pid in workers)

    def stop(self):
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
        self.log.close()


def process_cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def database_cpu_seconds() -> dict[int, float]:
    """CPU time of each local MariaDB/MySQL server process, by pid (compare only pids in both samples:
    another test may start and stop a server of its own meanwhile)."""
    pids = []
    for name in ("mariadbd", "mysqld"):
        pids += [int(pid) for pid in subprocess.run(["pidof", name], capture_output=True, text=True).stdout.split()]
    return {pid: process_cpu_seconds(pid) for pid in pids}


def cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    common = before.keys() & after.keys()
    return sum(after[pid] - before[pid] for pid in common) if common else float("nan")


# -- the load -------------------------------------------------------------------------------------------
def _client_process(args):
    """One load process: `threads` keep-alive clients; returns (latencies, status counts, errors)."""
    port, path, kind, secret, seconds, threads, proc_index, procs, first_order, days_ago = args
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    errors = [0]
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds
    base_ms = int(time.time() - days_ago * 86400) * 1000

    def client(index: int):
        slot = proc_index * threads + index  # 0..clients-1
        clients = procs * threads
        my_orders = [first_order + n for n in range(ORDERS) if n % clients == slot]
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        step = 0
        local_lat, local_status, local_err = [], {}, 0
        while time.perf_counter() < stop_at:
            order = my_orders[step % len(my_orders)]
            round_ = step // len(my_orders)
            if kind == "webhook":
                body = urllib.parse.urlencode({
                    "id": f"90{order}", "ops_id": str(order), "stage": STAGES[(round_ + 1) % len(STAGES)],
                    "payment_status": "Paid" if round_ % 2 else "Unpaid",
                    "modified_time": str(base_ms + (round_ + 1) * 1000),
                })
                headers = {"Content-Type": "application/x-www-form-urlencoded", "X-Webhook-Token": secret}
            else:
                body = f"id=90{order}&ops_id={order}&stage=Printing&modified_time={base_ms}"
                headers = {"Content-Type": "application/x-www-form-urlencoded"}
            step += 1
            started = time.perf_counter()
            try:
                conn.request("POST", path, body=body, headers=headers)
                response = conn.getresponse()
                response.read()
                status = response.status
            except (OSError, http.client.HTTPException):
                local_err += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                continue
            local_lat.append(time.perf_counter() - started)
            local_status[status] = local_status.get(status, 0) + 1
        conn.close()
        with lock:
            latencies.extend(local_lat)
            for k, v in local_status.items():
                statuses[k] = statuses.get(k, 0) + v
            errors[0] += local_err

    pool = [threading.Thread(target=client, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return latencies, statuses, errors[0]


def run_load(port: int, path: str, kind: str, secret: str, seconds: float, clients: int, procs: int, first_order: int,
             days_ago: int = 1) -> dict:
    threads = clients // procs
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(procs) as pool:
        started = time.perf_counter()
        parts = pool.map(_client_process, [(port, path, kind, secret, seconds, threads, i, procs, first_order, days_ago)
                                           for i in range(procs)])
        elapsed = time.perf_counter() - started
    latencies = sorted(lat for part in parts for lat in part[0])
    statuses: dict[int, int] = {}
    for part in parts:
        for k, v in part[1].items():
            statuses[k] = statuses.get(k, 0) + v
    errors = sum(part[2] for part in parts) + sum(v for k, v in statuses.items() if not 200 <= k < 300)
    ok = sum(v for k, v in statuses.items() if 200 <= k < 300)
    return {
        "requests": len(latencies), "ok": ok, "errors": errors, "statuses": statuses,
        "rps": ok / elapsed if elapsed else 0.0,
        "p50_ms": statistics.median(latencies) * 1000 if latencies else float("nan"),
        "p99_ms": latencies[max(0, int(len(latencies) * 0.99) - 1)] * 1000 if latencies else float("nan"),
    }


def count_inbox(env: dict) -> tuple[int, int]:
    import sqlalchemy as sa

    engine = sa.create_engine(env["DATABASE_URL"])
    with engine.connect() as conn:
        total = conn.execute(sa.text("SELECT COUNT(*) FROM gw_inbox")).scalar()
        applied = conn.execute(sa.text("SELECT COUNT(*) FROM gw_inbox WHERE outcome = 'applied'")).scalar()
    engine.dispose()
    return int(total), int(applied)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--procs", type=int, default=2, help="load-generator processes (clients are split between them)")
    parser.add_argument("--state", choices=("mysql", "sqlite"), default="mysql")
    parser.add_argument("--only", choices=("bare-ok", "bare-commit", "webhook"), action="append",
                        help="run only these targets (ratios need all three)")
    args = parser.parse_args()

    workdir = tempfile.mkdtemp(prefix="bench-webhook-")
    env, secret = prepare(args.state, workdir)
    first_order = int(env["BENCH_FIRST_ORDER"])
    threads = os.environ.get("GUNICORN_THREADS", "4")
    print(f"gunicorn: 2 workers x {threads} threads (gunicorn.conf.py), {args.clients} clients for {args.seconds:.0f} s each; "
          f"OnPrintShop: MariaDB; state store: {args.state}")
    targets = (
        ("bare-ok", "bench.webhook:bare_ok_app()", "/ok", "bare"),
        ("bare-commit", "bench.webhook:bare_commit_app()", "/commit", "bare"),
        ("webhook", "wsgi:app", "/webhooks/zoho/deals", "webhook"),
    )
    targets = tuple(t for t in targets if not args.only or t[0] in args.only)
    results = {}
    for name, spec, path, kind in targets:
        server = Server(spec, dict(env, WEB_CONCURRENCY="2"), workdir, name)
        try:
            # warm-up with older modified times, so every update of the measured run is newer
            run_load(server.port, path, kind, secret, 1.0, args.clients, args.procs, first_order, days_ago=2)
            if kind == "webhook":
                before = count_inbox(env)
            cpu_before, db_before = server.cpu_seconds(), database_cpu_seconds()
            results[name] = run_load(server.port, path, kind, secret, args.seconds, args.clients, args.procs, first_order)
            served = results[name]["requests"] or 1
            results[name]["app_cpu_ms"] = (server.cpu_seconds() - cpu_before) * 1000 / served
            results[name]["db_cpu_ms"] = cpu_delta(db_before, database_cpu_seconds()) * 1000 / served
            if kind == "webhook":
                after = count_inbox(env)
                results[name]["inbox_rows"] = after[0] - before[0]
                results[name]["applied_total"] = after[1]
        finally:
            server.stop()

    ok = results["bare-ok"]["rps"] if "bare-ok" in results else float("nan")
    commit = results["bare-commit"]["rps"] if "bare-commit" in results else float("nan")
    print(f"{'target':<12} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'vs ok':>7} {'vs commit':>10}"
          f" {'app CPU ms/req':>15} {'db CPU ms/req':>14}")
    for name, r in results.items():
        print(f"{name:<12} {r['rps']:>8.0f} {r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f} {r['errors']:>7} "
              f"{r['rps'] / ok:>7.2f} {r['rps'] / commit:>10.2f} {r['app_cpu_ms']:>15.2f} {r['db_cpu_ms']:>14.2f}")
    print(f"(the machine has {os.cpu_count()} cores, shared by the load generator, gunicorn and the database; "
          f"load average now {os.getloadavg()[0]:.1f})")
    hook = results.get("webhook")
    if hook is None:
        return
    print(f"webhook answers: {dict(sorted(hook['statuses'].items()))}; inbox rows committed during the run: "
          f"{hook['inbox_rows']} for {hook['ok']} 2xx answers")
    with open(os.path.join(workdir, "webhook.log"), errors="replace") as fh:
        problems = [line for line in fh if " ERROR " in line or " WARNING " in line]
    print(f"gateway log: {len(problems)} warning/error lines" + (f", first: {problems[0].strip()}" if problems else ""))
    if hook["inbox_rows"] < hook["ok"]:
        print("DURABILITY FAILURE: fewer committed inbox rows than 2xx answers")
        sys.exit(1)
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
