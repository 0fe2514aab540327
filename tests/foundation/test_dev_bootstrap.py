"""`dev-bootstrap` (make run) writes demo rows only into the embedded demo database, never a real store's."""
from __future__ import annotations

import sqlalchemy as sa


def _tables(url: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_the_embedded_default_gets_the_demo_data(make_app, tmp_path):
    embedded = f"sqlite:///{tmp_path}/instance/ops.db"  # what development uses when OPS_DATABASE_URL is unset
    app = make_app(OPS_DATABASE_URL=embedded)
    result = app.test_cli_runner().invoke(args=["dev-bootstrap"])
    assert result.exit_code == 0, result.output
    assert "created the demo OnPrintShop database" in result.output
    assert {"customers", "orders", "orders_status", "orders_status_history"} <= _tables(embedded)


def test_an_empty_real_database_never_gets_demo_rows(make_app, ops_db_url):
    app = make_app(OPS_DATABASE_URL=ops_db_url)  # sqlite outside the instance folder, or a MariaDB
    assert not _tables(ops_db_url) & {"customers", "orders", "orders_status", "orders_status_history"}
    result = app.test_cli_runner().invoke(args=["dev-bootstrap"])
    assert result.exit_code == 0, result.output
    assert "not the embedded demo database" in result.output and "init-ops-demo" in result.output
    assert not _tables(ops_db_url) & {"customers", "orders", "orders_status", "orders_status_history"}
    assert "admin page:" in result.output  # the rest of the bootstrap still happens
