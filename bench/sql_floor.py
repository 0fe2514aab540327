"""The floor under a lone delivery's SQL: the statements `bench/profile_webhook.py` counts for one
Deal (the marker locked and read, the order locked, updated and its history row, the inbox row,
the loop-guard row, the marker written back, and the two COMMITs), sent in the same process
through the driver's cursors alone and through SQLAlchemy Core with the gateway's engines
(`gateway.state.engine.make_engine`), with PyMySQL and, where it is installed, mysqlclient.
Prints CPU per delivery for each and the ratios to PyMySQL's cursors. The tables are scratch
copies of the shapes, not the gateway's own.

    BENCH_MYSQL_URL=mysql://root@127.0.0.1:3306/ .venv/bin/python bench/sql_floor.py [-n 3000]

The database `gw_sql_floor` is (re)created there.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import urllib.parse

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from bench.push import server_url  # noqa: E402 (after the path is set): a scratch database, made afresh

DATABASE = "gw_sql_floor"
TABLES = (
    "CREATE TABLE markers (module VARCHAR(16), zoho_id VARCHAR(40), modified_time DOUBLE, fingerprint VARCHAR(64), "
    "ops_id INT, PRIMARY KEY (module, zoho_id))",
    "CREATE TABLE inbox (id INT AUTO_INCREMENT PRIMARY KEY, module VARCHAR(16), zoho_id VARCHAR(40), "
    "modified_time DOUBLE, fields TEXT, state VARCHAR(16), KEY (module, zoho_id, state))",
    "CREATE TABLE loopguard (table_key VARCHAR(16), ops_id INT, last_modified DOUBLE, recorded_at DOUBLE, "
    "PRIMARY KEY (table_key, ops_id, last_modified))",
    "CREATE TABLE orders (orders_id INT PRIMARY KEY, orders_status_id INT, payment_status VARCHAR(20), last_modified DATETIME)",
    "CREATE TABLE history (id INT AUTO_INCREMENT PRIMARY KEY, orders_id INT, orders_status_id INT, date_added DATETIME, "
    "comments TEXT)",
)
# One delivery: (database, statement with %(name)s parameters, parameters); "commit" ends a transaction.
LOCK_MARKER = ("SELECT modified_time, fingerprint, ops_id, (SELECT MIN(i.modified_time) FROM inbox i WHERE "
               "i.module = markers.module AND i.zoho_id = markers.zoho_id AND i.state = 'pending') "
               "FROM markers WHERE module = %(m)s AND zoho_id = %(z)s FOR UPDATE")


def steps(n: int):
    return (
        ("state", LOCK_MARKER, {"m": "Deals", "z": "901"}),
        ("ops", "SELECT orders_status_id, payment_status, last_modified FROM orders WHERE orders_id = %(i)s FOR UPDATE",
         {"i": 1}),
        ("ops", "UPDATE orders SET orders_status_id = %(s)s, last_modified = NOW() WHERE orders_id = %(i)s",
         {"s": n % 6, "i": 1}),
        ("ops", "INSERT INTO history (orders_id, orders_status_id, date_added, comments) VALUES (%(i)s, %(s)s, NOW(), %(c)s)",
         {"i": 1, "s": n % 6, "c": "Zoho CRM: Deal 901 moved to stage Shipped"}),
        ("ops", "commit", None),
        ("state", "INSERT INTO inbox (module, zoho_id, modified_time, fields, state) VALUES (%(m)s, %(z)s, %(t)s, %(f)s, %(s)s)",
         {"m": "Deals", "z": "901", "t": float(n), "f": '{"stage": "Shipped"}', "s": "applied"}),
        ("state", "INSERT INTO loopguard VALUES (%(k)s, %(i)s, %(t)s, %(a)s) ON DUPLICATE KEY UPDATE recorded_at = VALUES(recorded_at)",
         {"k": "orders", "i": 1, "t": float(n), "a": time.time()}),
        ("state", "UPDATE markers SET modified_time = %(t)s, fingerprint = %(f)s, ops_id = %(i)s "
                  "WHERE module = %(m)s AND zoho_id = %(z)s", {"t": float(n), "f": "fp", "i": 1, "m": "Deals", "z": "901"}),
        ("state", "commit", None),
    )


def cpu() -> float:
    t = os.times()
    return t.user + t.system


def through_cursors(driver, url: str, n: int) -> float:
    """`driver`: the DBAPI module (pymysql or MySQLdb); both take these keywords."""
    parts = urllib.parse.urlsplit(url)
    conns = {name: driver.connect(host=parts.hostname or "127.0.0.1", port=parts.port or 3306, user=parts.username or "root",
                                  password=parts.password or "", database=DATABASE, autocommit=False)
             for name in ("state", "ops")}
    cursors = {name: conn.cursor() for name, conn in conns.items()}
    started = cpu()
    for i in range(n):
        for db, sql, params in steps(i):
            if sql == "commit":
                conns[db].commit()
            else:
                cursors[db].execute(sql, params)
                cursors[db].fetchall()
    spent = cpu() - started
    for conn in conns.values():
        conn.close()
    return spent * 1000 / n


def through_sqlalchemy(url: str, n: int) -> float:
    import sqlalchemy as sa

    from gateway.state.engine import make_engine

    engines = {"state": make_engine(url, isolation_level="READ COMMITTED"), "ops": make_engine(url)}
    texts = {sql: sa.text(sql.replace("%(", ":").replace(")s", "")) for _db, sql, _p in steps(0) if sql != "commit"}
    started = cpu()
    for i in range(n):
        conns = {}
        for db, sql, params in steps(i):
            conn = conns.get(db)
            if conn is None:
                conn = conns[db] = engines[db].connect()
            if sql == "commit":
                conn.commit()
                conn.close()
                del conns[db]
            elif sql.startswith("SELECT"):
                conn.execute(texts[sql], params).all()
            else:
                conn.execute(texts[sql], params)
    spent = cpu() - started
    for engine in engines.values():
        engine.dispose()
    return spent * 1000 / n


def with_driver(url: str, driver: str) -> str:
    return "mysql+" + driver + "://" + url.split("://", 1)[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=3000, help="deliveries per run")
    args = parser.parse_args()
    base = os.environ.get("BENCH_MYSQL_URL") or os.environ.get("TEST_MYSQL_URL")
    if not base:
        sys.exit("set BENCH_MYSQL_URL to a MariaDB/MySQL server, e.g. mysql://root@127.0.0.1:3306/")
    url = server_url(base, DATABASE)

    import pymysql
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for ddl in TABLES:
            conn.exec_driver_sql(ddl)
        conn.exec_driver_sql("INSERT INTO markers VALUES ('Deals', '901', 0, 'fp', 1)")
        conn.exec_driver_sql("INSERT INTO orders VALUES (1, 1, 'Paid', NOW())")
    engine.dispose()

    ways = {"PyMySQL cursors alone": lambda n: through_cursors(pymysql, url, n),
            "SQLAlchemy Core, PyMySQL": lambda n: through_sqlalchemy(with_driver(url, "pymysql"), n)}
    try:
        import MySQLdb
    except ImportError:
        MySQLdb = None  # optional (docs/settings.md, "MySQL drivers")
    if MySQLdb is not None:
        ways["mysqlclient cursors alone"] = lambda n: through_cursors(MySQLdb, url, n)
        ways["SQLAlchemy Core, mysqlclient"] = lambda n: through_sqlalchemy(with_driver(url, "mysqldb"), n)
    for way in ways.values():  # warm-up
        way(max(50, args.n // 10))
    figures: dict[str, list[float]] = {name: [] for name in ways}
    for _round in range(3):  # interleaved, so a busy moment of the machine touches every way
        for name, way in ways.items():
            figures[name].append(way(args.n))
    print(f"CPU per delivery (7 statements, 2 commits; median of 3 runs of {args.n}):")
    base = sorted(figures["PyMySQL cursors alone"])[1]
    for name, values in figures.items():
        median = sorted(values)[1]
        print(f"  {name:<30} {median:.3f} ms  ({median / base:.2f}x)")
    if MySQLdb is None:
        print("  (mysqlclient is not installed: its rows are left out)")


if __name__ == "__main__":
    main()
