"""The OnPrintShop data access: mapping file, reference schema, `init-ops-demo`, time zones."""
from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from gateway.errors import ConfigError
from gateway.ops import mapping
from gateway.ops.database import demo
from gateway.ops.database import OpsDatabase


def test_init_ops_demo_creates_reference_schema_and_refuses_twice(make_app, ops_db_url):
    app = make_app(OPS_DATABASE_URL=ops_db_url)
    runner = app.test_cli_runner()
    result = runner.invoke(args=["init-ops-demo"])
    assert result.exit_code == 0, result.output
    assert "created customers, orders_status, orders, orders_status_history" in result.output

    engine = sa.create_engine(ops_db_url)
    with engine.connect() as conn:
        statuses = conn.execute(sa.text("SELECT orders_status_id, orders_status_name FROM orders_status ORDER BY 1")).all()
        assert [tuple(r) for r in statuses] == [
            (1, "Pending"), (2, "Order Processing"), (3, "Printing"), (4, "Shipped"), (5, "Order Completed"), (6, "Cancelled"),
        ]
        assert conn.execute(sa.text("SELECT COUNT(*) FROM customers")).scalar() == len(demo.DEMO_CUSTOMERS)
        assert conn.execute(sa.text("SELECT COUNT(*) FROM orders")).scalar() == len(demo.DEMO_ORDERS)
        names = conn.execute(sa.text("SELECT customers_firstname FROM customers ORDER BY customers_id")).scalars().all()
        assert "Søren" in names
        conn.execute(sa.text("UPDATE customers SET customers_firstname = 'kept' WHERE customers_id = 1"))
        conn.commit()

    again = runner.invoke(args=["init-ops-demo"])
    assert again.exit_code != 0
    assert again.output.strip().count("\n") == 0, again.output  # one line
    assert "already has these tables: customers" in again.output and "--force" in again.output
    with engine.connect() as conn:  # nothing touched
        assert conn.execute(sa.text("SELECT customers_firstname FROM customers WHERE customers_id = 1")).scalar() == "kept"

    forced = runner.invoke(args=["init-ops-demo", "--force"])
    assert forced.exit_code == 0, forced.output
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT customers_firstname FROM customers WHERE customers_id = 1")).scalar() == "Ada"
        if engine.dialect.name == "mysql":
            charset = conn.execute(sa.text(
                "SELECT CCSA.character_set_name FROM information_schema.TABLES T JOIN "
                "information_schema.COLLATION_CHARACTER_SET_APPLICABILITY CCSA ON CCSA.collation_name = T.table_collation "
                "WHERE T.table_schema = DATABASE() AND T.table_name = 'customers'")).scalar()
            assert charset == "utf8mb4"
    engine.dispose()


def test_init_ops_demo_refuses_when_only_one_table_exists(make_app, tmp_path):
    url = f"sqlite:///{tmp_path}/partial.db"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE orders_status_history (x INTEGER)"))
    engine.dispose()
    result = make_app(OPS_DATABASE_URL=url).test_cli_runner().invoke(args=["init-ops-demo"])
    assert result.exit_code != 0
    assert "orders_status_history" in result.output


def test_demo_created_once_for_make_run(tmp_path):
    ops = OpsDatabase(f"sqlite:///{tmp_path}/ops.db")
    assert demo.create_if_absent(ops) is True
    assert demo.create_if_absent(ops) is False
    ops.dispose()


def test_mapping_file_renames_tables_and_columns(make_app, tmp_path):
    instance = tmp_path / "instance"
    instance.mkdir()
    (instance / "mapping.toml").write_text(
        '[tables]\ncustomers = "kunden"\n[columns.customers]\ncustomers_email_address = "email"\n'
        '[status_aliases]\n"Won" = "Order Completed"\n[zoho]\ndeal_ops_id_field = "OPS_Order_Id"\n'
    )
    app = make_app()
    ops = app.extensions["gateway"].ops
    assert ops.tables["customers"].name == "kunden"
    assert ops.tables["customers"].c.customers_email_address.name == "email"
    assert ops.mapping.resolve_stage("won") == "Order Completed"
    assert ops.mapping.resolve_stage("Closed Won") == "Closed Won"  # the section replaces the defaults
    assert ops.mapping.zoho_field("deal_ops_id_field") == "OPS_Order_Id"
    demo.create(ops)
    with ops.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT COUNT(*) FROM kunden WHERE email = 'ada@example.com'")).scalar() == 1


@pytest.mark.parametrize("text, named", [
    ('[columns.customers]\nemial = "x"\n', "columns.customers.emial"),
    ('[tables]\ncustomer = "x"\n', "tables.customer"),
    ('[tables]\ncustomers = "x; DROP TABLE y"\n', "tables.customers"),
    ('[lengths.customers]\ncustomers_firstname = 0\n', "lengths.customers.customers_firstname"),
    ('[zoho]\ncolour = "x"\n', "zoho.colour"),
    ('[database]\ncharset = "ebcdic"\n', "database.charset"),
    ('[colums]\n', "colums"),
    ('tables = [', "not valid TOML"),
])
def test_bad_mapping_stops_start_up_naming_the_key(make_app, tmp_path, text, named):
    instance = tmp_path / "instance"
    instance.mkdir()
    (instance / "mapping.toml").write_text(text)
    with pytest.raises(ConfigError) as info:
        make_app()
    assert named in str(info.value)
    assert "mapping.toml" in str(info.value)


def test_defaults_are_the_reference_schema():
    m = mapping.Mapping()
    assert m.table("orders_status_history") == "orders_status_history"
    assert m.column("customers", "customers_email_address") == "customers_email_address"
    assert m.resolve_stage("closed won") == "Order Completed"
    assert m.resolve_stage("CLOSED LOST") == "Cancelled"
    assert m.resolve_stage("Printing") == "Printing"
    assert all(v is None for v in m.zoho.values())


def test_naive_datetimes_are_in_ops_timezone(tmp_path):
    ops = OpsDatabase(f"sqlite:///{tmp_path}/ops.db", timezone="Europe/Berlin")
    aware = dt.datetime(2026, 7, 1, 10, 0, 0, tzinfo=dt.timezone.utc)
    assert ops.to_local(aware) == dt.datetime(2026, 7, 1, 12, 0, 0)
    assert ops.from_local(dt.datetime(2026, 1, 1, 12, 0, 0)) == dt.datetime(2026, 1, 1, 11, 0, tzinfo=dt.timezone.utc)
    with pytest.raises(ConfigError, match="OPS_TIMEZONE"):
        OpsDatabase(f"sqlite:///{tmp_path}/ops.db", timezone="Mars/Olympus")
    ops.dispose()


def test_ping_says_whether_the_database_answers(tmp_path):
    assert OpsDatabase(f"sqlite:///{tmp_path}/ops.db").ping() is True
    assert OpsDatabase(f"sqlite:///{tmp_path}/missing-dir/ops.db").ping() is False


@pytest.mark.parametrize("name", ["OPS_TIMEZONE", "GATEWAY_ZOHO_TIMEZONE"])
def test_a_wrong_time_zone_stops_start_up_naming_the_setting(make_app, name):
    with pytest.raises(ConfigError, match=name):
        make_app(**{name: "Mars/Olympus"})
