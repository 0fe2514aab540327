"""init-db's migrations on every state store: fresh databases, adoption of the release before
migrations, the schema they build against tables.py, refusals, and concurrent runs."""
import threading

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from gateway.errors import SchemaError
from gateway.state import Store
from gateway.state.migrate import ADOPTED_REVISION, VERSION_TABLE, alembic_config, init_db, script_directory
from gateway.state.tables import metadata
from tests.conftest import reset_gateway_tables
from tests.foundation import schema_v1


def gateway_tables(conn) -> set[str]:
    return {name for name in sa.inspect(conn).get_table_names() if name.startswith("gw_")}


def revisions(conn) -> set[str]:
    return set(MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}).get_current_heads())


def head() -> set[str]:
    return set(script_directory().get_heads())


def all_rows(conn, tables) -> dict:
    """Every row of every table named, as sorted tuples (values as the driver returns them)."""
    out = {}
    for name in sorted(tables):
        table = sa.Table(name, sa.MetaData(), autoload_with=conn)
        out[name] = sorted(tuple(row) for row in conn.execute(sa.select(table)))
    return out


def schema_of(conn, tables) -> dict:
    """Columns, primary keys, indexes and unique constraints as reflected, plus the exact DDL
    where the database keeps it (SQLite's sqlite_master, MariaDB's SHOW CREATE TABLE)."""
    inspector = sa.inspect(conn)
    out = {}
    for name in sorted(tables):
        columns = [{key: repr(value) for key, value in column.items()} for column in inspector.get_columns(name)]
        indexes = sorted((ix["name"], tuple(ix["column_names"]), bool(ix["unique"])) for ix in inspector.get_indexes(name))
        uniques = sorted((uq["name"], tuple(uq["column_names"])) for uq in inspector.get_unique_constraints(name))
        out[name] = {"columns": columns, "pk": inspector.get_pk_constraint(name), "indexes": indexes, "uniques": uniques}
        if conn.dialect.name == "sqlite":
            ddl = conn.execute(sa.text("SELECT type, name, sql FROM sqlite_master WHERE tbl_name = :name ORDER BY name"),
                               {"name": name})
            out[name]["ddl"] = sorted(tuple(row) for row in ddl)
        elif conn.dialect.name == "mysql":
            quoted = conn.dialect.identifier_preparer.quote(name)
            lines = [line.strip().rstrip(",") for line in conn.exec_driver_sql(f"SHOW CREATE TABLE {quoted}").one()[1].splitlines()]
            # Index lines come in the order the indexes were created, which says nothing.
            keys = sorted(line for line in lines if line.startswith(("KEY ", "UNIQUE KEY ")))
            out[name]["ddl"] = [line for line in lines if line not in keys], keys
    return out


def differences(conn, target: sa.MetaData) -> list[str]:
    """What autogenerate would change to bring the database to `target` (types and server
    defaults compared too), one line each, over the gateway's tables only: a MariaDB test
    database may also hold the OnPrintShop tables."""

    def ours(name, kind, _parent):
        return kind != "table" or name in target.tables or name.startswith("gw_")

    context = MigrationContext.configure(conn, opts={
        "version_table": VERSION_TABLE, "compare_type": True, "compare_server_default": True, "include_name": ours,
    })
    flat = [item for diff in compare_metadata(context, target) for item in (diff if isinstance(diff, list) else [diff])]
    return [describe(item) for item in flat]


def describe(diff: tuple) -> str:
    """One autogenerate difference as "kind table[.column]" or "kind name", with what it found."""
    kind = diff[0]
    if kind.startswith("modify_"):  # (kind, schema, table, column, existing, old, new)
        return f"{kind} {diff[2]}.{diff[3]}: {diff[5]!r} -> {diff[6]!r}"
    if kind in ("add_column", "remove_column"):  # (kind, schema, table, column)
        return f"{kind} {diff[2]}.{diff[3].name}"
    return f"{kind} {getattr(diff[1], 'name', diff[1])}"


@pytest.fixture
def store(state_db_url):
    store = Store(state_db_url)
    yield store
    store.dispose()


def test_a_fresh_database_gets_every_table_and_a_second_run_changes_nothing(store):
    init_db(store)
    with store.engine.connect() as conn:
        assert gateway_tables(conn) == set(metadata.tables) | {VERSION_TABLE}
        assert revisions(conn) == head()
        # The row the releases before migrations wrote: a fresh database equals one they made.
        assert all_rows(conn, ["gw_schema_version"]) == {"gw_schema_version": [(1, 1)]}
        before = schema_of(conn, gateway_tables(conn)), all_rows(conn, gateway_tables(conn))
    store.set_setting("probe", {"kept": True})
    init_db(store)
    with store.engine.connect() as conn:
        after = schema_of(conn, gateway_tables(conn)), all_rows(conn, gateway_tables(conn) - {"gw_settings"})
    assert after[0] == before[0]
    assert after[1] == {name: rows for name, rows in before[1].items() if name != "gw_settings"}
    assert store.get_setting("probe") == {"kept": True}


def sample_value(column: sa.Column, n: int):
    python_type = column.type.python_type
    if python_type is bool:
        return n % 2 == 0
    if python_type is int:
        return 1000 + n
    if python_type is float:
        return 1700000000.5 + n
    return f"{column.name[:8]}-{n}"


def test_a_database_of_the_release_before_migrations_is_adopted_with_every_row(store):
    schema_v1.init_db(store.engine)
    with store.engine.begin() as conn:
        for table in schema_v1.metadata.sorted_tables:
            if table.name == "gw_schema_version":
                continue  # its row (1, 1) is the one that release wrote
            conn.execute(table.insert(), [{c.name: sample_value(c, n) for c in table.columns} for n in (1, 2)])
        before = all_rows(conn, schema_v1.metadata.tables)
    assert all(before[name] for name in schema_v1.metadata.tables), "a table without a row proves nothing"
    assert VERSION_TABLE not in before

    init_db(store)

    with store.engine.connect() as conn:
        assert all_rows(conn, schema_v1.metadata.tables) == before
        assert revisions(conn) == head()
        assert differences(conn, metadata) == []
    init_db(store)  # and the adopted database is now an ordinary one
    with store.engine.connect() as conn:
        assert all_rows(conn, schema_v1.metadata.tables) == before


def test_revision_0001_is_exactly_what_the_release_before_migrations_created(store):
    schema_v1.init_db(store.engine)
    with store.engine.connect() as conn:
        created_then = schema_of(conn, schema_v1.metadata.tables), all_rows(conn, schema_v1.metadata.tables)
    store.dispose()
    reset_gateway_tables(store.url)

    with store.engine.begin() as conn:
        command.upgrade(alembic_config(conn), ADOPTED_REVISION)
    with store.engine.connect() as conn:
        assert gateway_tables(conn) == set(schema_v1.metadata.tables) | {VERSION_TABLE}
        assert (schema_of(conn, schema_v1.metadata.tables), all_rows(conn, schema_v1.metadata.tables)) == created_then


def test_the_migrations_build_exactly_the_schema_of_tables_py(store):
    init_db(store)
    with store.engine.connect() as conn:
        assert differences(conn, metadata) == []


def test_the_schema_check_sees_a_table_change_made_without_a_migration(store):
    init_db(store)
    changed = sa.MetaData()
    for table in metadata.tables.values():
        table.to_metadata(changed)
    changed.tables["gw_jobs"].append_column(sa.Column("priority", sa.Integer, nullable=True))
    changed.tables["gw_links"].c.sent_hash.type = sa.String(128)
    changed.tables["gw_leases"].c.holder.nullable = False
    changed.tables["gw_inbox"].c.attempts.server_default = sa.DefaultClause("0")
    sa.Index("ix_gw_audit_who", changed.tables["gw_audit"].c.who)
    sa.Table("gw_new", changed, sa.Column("name", sa.String(16), primary_key=True))
    with store.engine.connect() as conn:
        found = differences(conn, changed)
    kinds = sorted(line.split(":")[0] for line in found)
    assert kinds == ["add_column gw_jobs.priority", "add_index ix_gw_audit_who", "add_table gw_new",
                     "modify_default gw_inbox.attempts", "modify_nullable gw_leases.holder",
                     "modify_type gw_links.sent_hash"], found


def test_a_half_made_database_is_refused_naming_what_is_missing_and_left_untouched(store):
    some = [schema_v1.metadata.tables[name] for name in ("gw_settings", "gw_leases", "gw_secrets")]
    schema_v1.metadata.create_all(store.engine, tables=some)
    with pytest.raises(SchemaError) as refused:
        init_db(store)
    message = str(refused.value)
    assert "\n" not in message and "half-made" in message
    missing = set(schema_v1.metadata.tables) - {"gw_settings", "gw_leases", "gw_secrets"}
    assert all(name in message for name in missing), message
    assert "gw_settings" not in message.split("but not")[1]
    with store.engine.connect() as conn:
        assert gateway_tables(conn) == {"gw_settings", "gw_leases", "gw_secrets"}


def test_an_unknown_schema_version_of_the_release_before_migrations_is_refused(store):
    schema_v1.init_db(store.engine)
    with store.engine.begin() as conn:
        conn.execute(schema_v1.schema_version_table.update().values(version=7))
    with pytest.raises(SchemaError, match="gw_schema_version says version 7"):
        init_db(store)
    with store.engine.connect() as conn:
        assert VERSION_TABLE not in gateway_tables(conn)


def test_a_migrated_database_that_lost_a_table_is_refused_naming_it(store):
    init_db(store)
    with store.engine.begin() as conn:
        sa.Table("gw_jobs", sa.MetaData()).drop(conn)
    with pytest.raises(SchemaError, match=r"has no table gw_jobs: dropped by hand"):
        init_db(store)


def test_a_database_migrated_by_a_newer_release_is_refused_and_left_as_it_is(store):
    init_db(store)
    version = sa.Table(VERSION_TABLE, sa.MetaData(), autoload_with=store.engine)
    with store.engine.begin() as conn:
        conn.execute(version.update().values(version_num="9999"))
    with pytest.raises(SchemaError, match="at revision 9999, which this release does not know"):
        init_db(store)
    with store.engine.connect() as conn:
        assert revisions(conn) == {"9999"}


def test_init_db_on_a_half_made_database_says_so_in_one_line(tmp_path):
    from tests.foundation.test_hardening import _flask

    engine = sa.create_engine(f"sqlite:///{tmp_path}/half.db")
    schema_v1.metadata.create_all(engine, tables=[schema_v1.metadata.tables["gw_jobs"]])
    engine.dispose()
    result = _flask(tmp_path, "init-db", env={"DATABASE_URL": f"sqlite:///{tmp_path}/half.db"})
    assert result.returncode != 0 and "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "half-made" in lines[0] and "gw_settings" in lines[0], result.stderr


def test_init_db_run_by_several_processes_at_once_migrates_once(state_db_url):
    stores = [Store(state_db_url) for _ in range(4)]
    barrier = threading.Barrier(len(stores))
    errors = []

    def run(store):
        try:
            barrier.wait(timeout=30)
            init_db(store)
        except Exception as exc:  # collected and asserted on below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(store,)) for store in stores]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert not any(thread.is_alive() for thread in threads), "an init_db is still running after 120 s"
        assert errors == []
        with stores[0].engine.connect() as conn:
            assert revisions(conn) == head()
            assert all_rows(conn, [VERSION_TABLE, "gw_schema_version"]) == {
                VERSION_TABLE: [tuple(head())], "gw_schema_version": [(1, 1)]}
            assert differences(conn, metadata) == []
    finally:
        for store in stores:
            store.dispose()
