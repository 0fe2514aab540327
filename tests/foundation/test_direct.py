"""The hot statements sent on the driver's cursor (gateway.state.direct) answer exactly as
SQLAlchemy would, on every database: the same rows and types, the same ids and counts, the same
wrapped errors with the values kept out of them, and a connection the server dropped replaced."""
from __future__ import annotations

import pytest
import sqlalchemy as sa

from gateway.state import direct
from gateway.state.engine import make_engine
from tests.conftest import wait_until

metadata = sa.MetaData()
things = sa.Table(
    "gw_test_direct", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(40), nullable=False, unique=True),
    sa.Column("ops_id", sa.BigInteger, nullable=True),
    sa.Column("at", sa.Double, nullable=False),
    sa.Column("flag", sa.Boolean, nullable=False),
    sa.Column("body", sa.Text, nullable=True),
    sa.Column("note", sa.String(20), nullable=False, default=lambda: "set by default"),  # computed in Python
)
t = things.c
INSERT = things.insert()
HOW_MANY_LIKE = sa.select(sa.func.count()).where(things.c.name.like(sa.bindparam("pattern"))).scalar_subquery()
READ = (sa.select(t.name, t.ops_id, t.at, t.flag, t.body, HOW_MANY_LIKE.label("alike"))
        .where(t.name == sa.bindparam("name")).with_for_update())
UPDATE = things.update().where(t.name == sa.bindparam("where_name"))


@pytest.fixture
def engine(state_db_url):
    engine = make_engine(state_db_url)
    metadata.drop_all(engine)
    metadata.create_all(engine)
    yield engine
    engine.dispose()
    cleanup = sa.create_engine(state_db_url)
    metadata.drop_all(cleanup)
    cleanup.dispose()


def _on_cursor(engine) -> list[bool]:
    """For each statement sent, whether it went straight on the cursor (no SQLAlchemy context)."""
    seen: list[bool] = []
    sa.event.listen(engine, "before_cursor_execute", lambda *args: seen.append(args[4] is None))
    return seen


def test_rows_ids_and_counts_are_what_sqlalchemy_gives(engine):
    on_cursor = _on_cursor(engine)
    direct_calls = []
    row = {"name": "first", "ops_id": 2**40, "at": 1764800000.25, "flag": True, "body": "ünïcode ✓ 100%", "note": "n"}
    with engine.connect() as conn:
        first = direct.insert_id(conn, INSERT, row)
        second = direct.insert_id(conn, INSERT, {**row, "name": "second", "flag": False, "body": None})
        direct_calls += on_cursor[-2:]
        conn.commit()
    assert (first, second) == (1, 2)
    with engine.connect() as conn:
        params = {"name": "first", "pattern": "%s%"}
        got = direct.rows(conn, READ, params)
        direct_calls.append(on_cursor[-1])
        expected = conn.execute(READ, params).all()
        assert [tuple(r) for r in got] == [tuple(r) for r in expected] == [
            ("first", 2**40, 1764800000.25, True, "ünïcode ✓ 100%", 2)]
        assert [type(v) for v in got[0]] == [type(v) for v in expected[0]]  # a bool stays a bool, a float a float
        assert (got[0].flag, got[0].alike) == (True, 2)
        assert direct.rows(conn, READ, {"name": "third", "pattern": "%"}) == []
        # Matched rows, not changed ones: the same values again still count.
        assert direct.run(conn, UPDATE, {"where_name": "second", "at": 5.5, "flag": True}) == 1
        assert direct.run(conn, UPDATE, {"where_name": "second", "at": 5.5, "flag": True}) == 1
        assert direct.run(conn, UPDATE, {"where_name": "nobody", "at": 5.5}) == 0
        direct_calls += on_cursor[-3:]
        assert direct.rows(conn, READ, {"name": "second", "pattern": "%"})[0][2:4] == (5.5, True)
        conn.rollback()
    with engine.connect() as conn:
        assert conn.execute(sa.select(t.at, t.flag).where(t.name == "second")).one() == (1764800000.25, False)
    # On MariaDB and PostgreSQL every one went on the cursor; SQLite takes SQLAlchemy's path.
    assert direct_calls == [engine.dialect.name != "sqlite"] * 6


def test_a_column_default_computed_in_python_is_filled_in(engine):
    """SQLAlchemy computes such a default in its execution context: an INSERT leaving the column
    out is its to send, and the row gets the default; one giving the column goes on the cursor."""
    on_cursor = _on_cursor(engine)
    row = {"name": "plain", "ops_id": 1, "at": 1.0, "flag": False, "body": None}
    with engine.connect() as conn:
        direct.insert_id(conn, INSERT, row)
        direct.insert_id(conn, INSERT, {**row, "name": "noted", "note": "given"})
        conn.commit()
        notes = dict(conn.execute(sa.select(t.name, t.note)).all())
    assert notes == {"plain": "set by default", "noted": "given"}
    assert on_cursor[:2] == [False, engine.dialect.name != "sqlite"]


def test_a_refused_statement_is_sqlalchemys_error_without_the_values(engine):
    row = {"name": "taken", "ops_id": 1, "at": 1.0, "flag": True, "body": "customer@example.com"}
    with engine.connect() as conn:
        direct.insert_id(conn, INSERT, row)
        with pytest.raises(sa.exc.IntegrityError) as refused:
            direct.insert_id(conn, INSERT, row)
        assert "customer@example.com" not in str(refused.value)
        assert not refused.value.connection_invalidated
        conn.rollback()
        assert direct.insert_id(conn, INSERT, {**row, "name": "free"}) >= 1  # the connection goes on
        conn.commit()


def test_a_connection_the_server_drops_is_invalidated_and_replaced(engine):
    if engine.dialect.name == "sqlite":
        pytest.skip("SQLite has no server to drop the connection")
    killer = sa.create_engine(engine.url)
    row = {"name": "one", "ops_id": 1, "at": 1.0, "flag": True, "body": None}
    try:
        with engine.connect() as conn:
            direct.insert_id(conn, INSERT, row)
            if engine.dialect.name == "mysql":
                ours = conn.exec_driver_sql("SELECT CONNECTION_ID()").scalar()
                with killer.connect() as other:
                    other.exec_driver_sql(f"KILL {int(ours)}")
            else:
                ours = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
                with killer.connect() as other:
                    other.exec_driver_sql(f"SELECT pg_terminate_backend({int(ours)})")
                    other.commit()

                def ended() -> bool:  # asked anew each time: a transaction keeps one view of pg_stat_activity
                    with killer.connect() as other:
                        return not other.exec_driver_sql(f"SELECT 1 FROM pg_stat_activity WHERE pid = {int(ours)}").first()

                wait_until(ended, timeout=10, message="the backend to end")
            with pytest.raises(sa.exc.DBAPIError) as lost:
                direct.rows(conn, READ, {"name": "one", "pattern": "%"})
            assert lost.value.connection_invalidated and conn.invalidated
            conn.rollback()
        with engine.connect() as conn:  # the pool hands out a live connection, and nothing was kept
            assert direct.rows(conn, READ, {"name": "one", "pattern": "%"}) == []
    finally:
        killer.dispose()


def test_after_a_lost_connection_the_pools_other_connections_are_replaced_too(engine):
    """A database restart drops every pooled connection at once. The first statement to meet one
    invalidates the pool, as SQLAlchemy does, so the others (pinged only after resting a second
    on MariaDB) are not handed out to fail one by one."""
    if engine.dialect.name != "mysql":
        pytest.skip("MariaDB only: SQLite has no server, PostgreSQL's pool pings every connection it hands out")
    own_id, kill = "SELECT CONNECTION_ID()", "KILL {}"
    first, second = engine.connect(), engine.connect()
    ids = [int(conn.exec_driver_sql(own_id).scalar()) for conn in (first, second)]
    first.close()
    second.close()  # both back in the pool
    killer = sa.create_engine(engine.url, poolclass=sa.pool.NullPool)
    try:
        with killer.connect() as other:
            for server_id in ids:
                other.exec_driver_sql(kill.format(server_id))
        with engine.connect() as conn, pytest.raises(sa.exc.DBAPIError) as lost:
            direct.rows(conn, READ, {"name": "one", "pattern": "%"})
        assert lost.value.connection_invalidated
        for _ in range(2):  # neither dropped connection comes back
            with engine.connect() as conn:
                assert int(conn.exec_driver_sql(own_id).scalar()) not in ids
                assert direct.rows(conn, READ, {"name": "one", "pattern": "%"}) == []
    finally:
        killer.dispose()
