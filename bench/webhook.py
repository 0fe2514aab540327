"""Benchmark of the Zoho webhooks against two baselines, in the same run (issue 11, "Done when").

Targets, each served by gunicorn with the production settings (`gunicorn.conf.py`: 2 workers,
gthread, GUNICORN_THREADS threads, GATEWAY_ENV=production, GATEWAY_RUN_WORKER=1):
  1. bare-ok       a bare Flask endpoint answering "ok";
  2. bare-commit   a bare Flask endpoint committing one row to the same MariaDB;
  3. repeat        POST /webhooks/zoho/deals, 400 orders updated in turn: each delivery a new stage
                   and payment status with a later modified_time (state store on MariaDB);
  4. new           every delivery a Deal the gateway has never seen (a first stage change, found by
                   its ops_id and linked: the common case), state store on MariaDB;
  5. new-pg        the same with the state store on PostgreSQL, OnPrintShop on MariaDB (as on Heroku).
16 concurrent clients (keep-alive connections, spread over a few processes) post for a fixed
time. Prints per target req/s, p50/p99 latency, errors, the ratios to both baselines and CPU
per request (the gunicorn workers', and the database servers'), then checks, once the deliveries
stored pending were applied by the background worker: inbox rows committed = 2xx answers, and
status history rows written = status changes the applied deliveries made.

Needs MariaDB/MySQL: BENCH_MYSQL_URL (or TEST_MYSQL_URL), e.g. mysql://root@127.0.0.1:3306/ (the driver the
gateway picks: mysqlclient where installed, else PyMySQL; mysql+pymysql:// names one), and for new-pg PostgreSQL: BENCH_PG_URL (default postgresql+psycopg://postgres@127.0.0.1:5432/).
Databases named BENCH_DB_PREFIX (default gw_bench_) + ops/state are (re)created there.

    .venv/bin/python bench/webhook.py [--seconds 12] [--clients 16] [--only TARGET ...]
"""
from __future__ import annotations

import argparse
import base64
import http.client
import json
import multiprocessing
import os
import runpy
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

ORDERS = 400            # repeat mode: the orders updated in turn
NEW_ORDERS = 60000      # new mode: one delivery each; the warm-up takes them from WARM_FROM on
WARM_FROM = 50000
STAGES = ("Pending", "Order Processing", "Printing", "Shipped", "Order Completed", "Cancelled")
PREFIX = os.environ.get("BENCH_DB_PREFIX", "gw_bench_")


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
def server_url(kind: str) -> str:
    if kind == "postgresql":
        url = os.environ.get("BENCH_PG_URL") or "postgresql+psycopg://postgres@127.0.0.1:5432/"
    else:
        url = os.environ.get("BENCH_MYSQL_URL") or os.environ.get("TEST_MYSQL_URL")
        if not url:
            sys.exit("set BENCH_MYSQL_URL (or TEST_MYSQL_URL) to a MariaDB server, e.g. mysql://root@127.0.0.1:3306/")
        from gateway.settings import normalize_database_url

        url = normalize_database_url(url, "BENCH_MYSQL_URL")  # mysql://: the driver the gateway would pick
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, "/", "", ""))


def recreate_database(kind: str, name: str) -> str:
    import sqlalchemy as sa

    root = server_url(kind)
    if kind == "postgresql":
        engine = sa.create_engine(root + "postgres", isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            conn.exec_driver_sql(f"CREATE DATABASE {name}")
        engine.dispose()
        return root.rstrip("/") + f"/{name}"
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
                            capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        sys.exit(f"flask {' '.join(args)} failed: {result.stderr.strip() or result.stdout.strip()}")
    return result.stdout


def base_env(workdir: str) -> dict:
    from cryptography.fernet import Fernet

    env = dict(os.environ,
               GATEWAY_ENV="production", GATEWAY_INSTANCE_PATH=os.path.join(workdir, "instance"),
               SECRET_KEY=base64.urlsafe_b64encode(os.urandom(32)).decode(), GATEWAY_FERNET_KEYS=Fernet.generate_key().decode(),
               GATEWAY_WEBHOOK_RATE_LIMIT="1000000 per minute", GATEWAY_POLL_SECONDS="0", GATEWAY_RUN_WORKER="1",
               GATEWAY_LOG_FORMAT="text", PYTHONPATH=REPO)
    os.makedirs(env["GATEWAY_INSTANCE_PATH"], exist_ok=True)
    return env


def prepare(env: dict, state: str, orders: int) -> tuple[dict, str]:
    """Fresh databases (OnPrintShop on MariaDB with `orders` orders, the state store on `state`),
    and the webhook secret."""
    import datetime as dt

    import sqlalchemy as sa

    ops_url = recreate_database("mysql", PREFIX + "ops")
    state_url = recreate_database(state, PREFIX + "state")
    env = dict(env, DATABASE_URL=state_url, OPS_DATABASE_URL=ops_url, BENCH_OPS_URL=ops_url)
    flask_cli(env, "init-db")
    flask_cli(env, "init-ops-demo", "--force")
    secret = flask_cli(env, "webhook-secret").splitlines()[0].split(" ", 1)[1]
    engine = sa.create_engine(ops_url)
    with engine.begin() as conn:
        long_ago = dt.datetime(2020, 1, 1)
        for start in range(0, orders, 5000):
            conn.execute(sa.text(
                "INSERT INTO orders (customers_id, orders_status_id, payment_status, order_total, currency, date_purchased, "
                "last_modified) VALUES (1, 1, 'Unpaid', 10.00, 'USD', :t, :t)"), [{"t": long_ago}] * min(5000, orders - start))
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
    """CPU time of each local MariaDB/MySQL and PostgreSQL server process, by pid (compare only pids
    in both samples: connections and other tests' servers come and go meanwhile)."""
    pids = []
    for name in ("mariadbd", "mysqld", "postgres"):
        pids += [int(pid) for pid in subprocess.run(["pidof", name], capture_output=True, text=True).stdout.split()]
    return {pid: process_cpu_seconds(pid) for pid in pids}


def cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    common = before.keys() & after.keys()
    return sum(after[pid] - before[pid] for pid in common) if common else float("nan")


# -- the load -------------------------------------------------------------------------------------------
def delivery(mode: str, slot: int, clients: int, step: int, first_order: int, base_ms: int, warm: bool) -> dict:
    """The step-th delivery of client `slot`: repeat mode cycles over the client's share of ORDERS
    orders, each round a new stage; new mode sends each order once, as a Deal never seen before."""
    if mode == "new":
        index = (WARM_FROM if warm else 0) + slot + step * clients
        order = first_order + index % NEW_ORDERS
        return {"id": f"77{order}", "ops_id": str(order), "stage": "Printing", "payment_status": "Paid",
                "modified_time": str(base_ms)}
    mine = (ORDERS - slot + clients - 1) // clients  # how many of the orders are this client's
    order = first_order + slot + (step % mine) * clients
    round_ = step // mine
    return {"id": f"90{order}", "ops_id": str(order), "stage": STAGES[(round_ + 1) % len(STAGES)],
            "payment_status": "Paid" if round_ % 2 else "Unpaid", "modified_time": str(base_ms + (round_ + 1) * 1000)}


def _client_process(args):
    """One load process: `threads` keep-alive clients; returns (latencies, status counts, errors)."""
    port, path, mode, secret, seconds, threads, proc_index, procs, first_order, warm = args
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    errors = [0]
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds
    base_ms = int(time.time() - (2 if warm else 1) * 86400) * 1000  # the measured run's times are later

    def client(index: int):
        slot = proc_index * threads + index  # 0..clients-1
        clients = procs * threads
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        step = 0
        local_lat, local_status, local_err = [], {}, 0
        while time.perf_counter() < stop_at:
            if mode == "bare":
                body = f"id=90{first_order}&ops_id={first_order}&stage=Printing&modified_time={base_ms}"
                headers = {"Content-Type": "application/x-www-form-urlencoded"}
            else:
                body = urllib.parse.urlencode(delivery(mode, slot, clients, step, first_order, base_ms, warm))
                headers = {"Content-Type": "application/x-www-form-urlencoded", "X-Webhook-Token": secret}
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


def run_load(port: int, path: str, mode: str, secret: str, seconds: float, clients: int, procs: int, first_order: int,
             warm: bool = False) -> dict:
    threads = clients // procs
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(procs) as pool:
        started = time.perf_counter()
        parts = pool.map(_client_process, [(port, path, mode, secret, seconds, threads, i, procs, first_order, warm)
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


# -- the checks -------------------------------------------------------------------------------------------
def high_water(env: dict) -> dict:
    """The last inbox row, the last history row and every order's status: what a run is counted from."""
    import sqlalchemy as sa

    state, ops = sa.create_engine(env["DATABASE_URL"]), sa.create_engine(env["OPS_DATABASE_URL"])
    with state.connect() as conn:
        inbox = conn.execute(sa.text("SELECT COALESCE(MAX(id), 0) FROM gw_inbox")).scalar()
    with ops.connect() as conn:
        history = conn.execute(sa.text("SELECT COALESCE(MAX(orders_status_history_id), 0) FROM orders_status_history")).scalar()
        statuses = dict(conn.execute(sa.text("SELECT orders_id, orders_status_id FROM orders")).all())
        names = {str(n).casefold(): int(i) for i, n in conn.execute(sa.text(
            "SELECT orders_status_id, orders_status_name FROM orders_status")).all()}
    state.dispose(), ops.dispose()
    return {"inbox": int(inbox), "history": int(history), "statuses": statuses, "names": names}


def wait_no_pending(env: dict, timeout: float = 120.0) -> int:
    """Wait for the background worker to apply what was stored pending; returns how many are left."""
    import sqlalchemy as sa

    engine = sa.create_engine(env["DATABASE_URL"])
    deadline = time.time() + timeout
    try:
        while True:
            with engine.connect() as conn:
                left = conn.execute(sa.text("SELECT COUNT(*) FROM gw_inbox WHERE state = 'pending'")).scalar()
            if not left or time.time() > deadline:
                return int(left)
            time.sleep(0.5)
    finally:
        engine.dispose()


def count_run(env: dict, mark: dict) -> dict:
    """Inbox rows stored since `mark`, and history rows written against the status changes the
    applied deliveries made (each applied delivery's stage against the order's status before it)."""
    import sqlalchemy as sa

    state, ops = sa.create_engine(env["DATABASE_URL"]), sa.create_engine(env["OPS_DATABASE_URL"])
    with state.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT ops_id, fields, outcome FROM gw_inbox WHERE id > :m ORDER BY ops_id, modified_time, id"),
            {"m": mark["inbox"]}).all()
    with ops.connect() as conn:
        history = conn.execute(sa.text("SELECT COUNT(*) FROM orders_status_history WHERE orders_status_history_id > :m"),
                               {"m": mark["history"]}).scalar()
    state.dispose(), ops.dispose()
    status, changes, outcomes = dict(mark["statuses"]), 0, {}
    for ops_id, fields, outcome in rows:
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        stage = json.loads(fields).get("stage")
        if outcome != "applied" or stage is None:
            continue
        wanted = mark["names"][stage.casefold()]
        if status.get(ops_id) != wanted:
            changes += 1
            status[ops_id] = wanted
    return {"inbox_rows": len(rows), "history_rows": int(history), "status_changes": changes, "outcomes": outcomes}


# -- the run ----------------------------------------------------------------------------------------------
TARGETS = (  # name, gunicorn app, path, load mode, state store
    ("bare-ok", "bench.webhook:bare_ok_app()", "/ok", "bare", "mysql"),
    ("bare-commit", "bench.webhook:bare_commit_app()", "/commit", "bare", "mysql"),
    ("repeat", "wsgi:app", "/webhooks/zoho/deals", "repeat", "mysql"),
    ("new", "wsgi:app", "/webhooks/zoho/deals", "new", "mysql"),
    ("new-pg", "wsgi:app", "/webhooks/zoho/deals", "new", "postgresql"),
)


def run_target(target, args, env: dict, workdir: str) -> dict:
    name, spec, path, mode, state = target
    env, secret = prepare(env, state, NEW_ORDERS if mode == "new" else ORDERS)
    first_order = int(env["BENCH_FIRST_ORDER"])
    server = Server(spec, dict(env, WEB_CONCURRENCY="2"), workdir, name)
    try:
        run_load(server.port, path, mode, secret, 1.0, args.clients, args.procs, first_order, warm=True)
        if mode != "bare":
            wait_no_pending(env)
            mark = high_water(env)
        cpu_before, db_before = server.cpu_seconds(), database_cpu_seconds()
        result = run_load(server.port, path, mode, secret, args.seconds, args.clients, args.procs, first_order)
        served = result["requests"] or 1
        result["app_cpu_ms"] = (server.cpu_seconds() - cpu_before) * 1000 / served
        result["db_cpu_ms"] = cpu_delta(db_before, database_cpu_seconds()) * 1000 / served
        if mode != "bare":
            result["pending_left"] = wait_no_pending(env)
            result.update(count_run(env, mark))
    finally:
        server.stop()
    if mode != "bare":
        with open(os.path.join(workdir, f"{name}.log"), errors="replace") as fh:
            result["problems"] = [line.strip() for line in fh if " ERROR " in line or " WARNING " in line]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--procs", type=int, default=2, help="load-generator processes (clients are split between them)")
    parser.add_argument("--only", choices=[t[0] for t in TARGETS], action="append",
                        help="run only these targets (the ratios need bare-ok and bare-commit)")
    args = parser.parse_args()

    workdir = tempfile.mkdtemp(prefix="bench-webhook-")
    env = base_env(workdir)
    threads = runpy.run_path(os.path.join(REPO, "gunicorn.conf.py"))["threads"]  # what gunicorn will use
    print(f"gunicorn: 2 workers x {threads} threads (gunicorn.conf.py), GATEWAY_RUN_WORKER=1, {args.clients} clients for "
          f"{args.seconds:.0f} s each; OnPrintShop: MariaDB ({server_url('mysql').split('://')[0]}); state store: MariaDB (new-pg: PostgreSQL)", flush=True)
    results = {}
    for target in TARGETS:
        if not args.only or target[0] in args.only:
            results[target[0]] = run_target(target, args, env, workdir)

    ok = results["bare-ok"]["rps"] if "bare-ok" in results else float("nan")
    commit = results["bare-commit"]["rps"] if "bare-commit" in results else float("nan")
    print(f"{'target':<12} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'vs ok':>7} {'vs commit':>10}"
          f" {'app CPU ms/req':>15} {'db CPU ms/req':>14}")
    for name, r in results.items():
        print(f"{name:<12} {r['rps']:>8.0f} {r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f} {r['errors']:>7} "
              f"{r['rps'] / ok:>7.2f} {r['rps'] / commit:>10.2f} {r['app_cpu_ms']:>15.2f} {r['db_cpu_ms']:>14.2f}")
    print(f"(the machine has {os.cpu_count()} cores, shared by the load generator, gunicorn and the databases; "
          f"load average now {os.getloadavg()[0]:.1f})")
    failed = False
    for name, r in results.items():
        if "inbox_rows" not in r:
            continue
        print(f"{name}: answers {dict(sorted(r['statuses'].items()))}; inbox rows committed {r['inbox_rows']} for "
              f"{r['ok']} 2xx answers (outcomes {r['outcomes']}, {r['pending_left']} still pending); history rows "
              f"{r['history_rows']} for {r['status_changes']} status changes; gateway log: {len(r['problems'])} "
              "warning/error lines" + (f", first: {r['problems'][0]}" if r["problems"] else ""))
        if r["inbox_rows"] < r["ok"]:
            print(f"DURABILITY FAILURE ({name}): fewer committed inbox rows than 2xx answers")
            failed = True
        if r["history_rows"] != r["status_changes"]:
            print(f"HISTORY MISMATCH ({name}): history rows differ from the status changes applied")
            failed = True
    if failed:
        sys.exit(1)
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
