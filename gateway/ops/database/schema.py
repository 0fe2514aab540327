"""The OnPrintShop tables (the reference schema, docs/onprintshop.md) as SQLAlchemy Core, on a
MetaData of their own: column keys are the reference names, SQL names the mapping's, so
`tables["orders"].c.orders_status_id` works whatever the store calls it."""
from __future__ import annotations

import sqlalchemy as sa

from ..mapping import Mapping

# The order in which the tables can be created (and the reverse dropped).
CREATE_ORDER = ("customers", "orders_status", "orders", "orders_status_history")

MYSQL_TABLE_KWARGS = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_unicode_ci", "mysql_engine": "InnoDB"}


def _id_type():
    # INTEGER as the reference schema says; on SQLite an INTEGER primary key is the rowid and autoincrements.
    return sa.Integer


def build_tables(mapping: Mapping) -> dict[str, sa.Table]:
    md = sa.MetaData()

    def col(table: str, key: str, type_, *args, **kwargs) -> sa.Column:
        return sa.Column(mapping.column(table, key), type_, *args, key=key, **kwargs)

    def text(table: str, key: str):
        return sa.String(mapping.length(table, key) or 255)

    customers = sa.Table(
        mapping.table("customers"), md,
        col("customers", "customers_id", _id_type(), primary_key=True, autoincrement=True),
        col("customers", "customers_firstname", text("customers", "customers_firstname"), nullable=False),
        col("customers", "customers_lastname", text("customers", "customers_lastname"), nullable=False),
        col("customers", "customers_email_address", text("customers", "customers_email_address"), nullable=False, unique=True),
        col("customers", "customers_telephone", text("customers", "customers_telephone"), nullable=True),
        col("customers", "customers_company", text("customers", "customers_company"), nullable=True),
        col("customers", "date_account_created", sa.DateTime, nullable=False),
        col("customers", "last_modified", sa.DateTime, nullable=False),
        **MYSQL_TABLE_KWARGS,
    )
    orders_status = sa.Table(
        mapping.table("orders_status"), md,
        col("orders_status", "orders_status_id", _id_type(), primary_key=True, autoincrement=False),
        col("orders_status", "orders_status_name", text("orders_status", "orders_status_name"), nullable=False, unique=True),
        **MYSQL_TABLE_KWARGS,
    )
    orders = sa.Table(
        mapping.table("orders"), md,
        col("orders", "orders_id", _id_type(), primary_key=True, autoincrement=True),
        col("orders", "customers_id", _id_type(), sa.ForeignKey(customers.c.customers_id), nullable=False),
        col("orders", "orders_status_id", _id_type(), sa.ForeignKey(orders_status.c.orders_status_id), nullable=False),
        col("orders", "payment_status", text("orders", "payment_status"), nullable=False),
        col("orders", "order_total", sa.Numeric(12, 2), nullable=False),
        col("orders", "currency", sa.CHAR(mapping.length("orders", "currency") or 3), nullable=False),
        col("orders", "date_purchased", sa.DateTime, nullable=False),
        col("orders", "last_modified", sa.DateTime, nullable=False),
        **MYSQL_TABLE_KWARGS,
    )
    history = sa.Table(
        mapping.table("orders_status_history"), md,
        col("orders_status_history", "orders_status_history_id", _id_type(), primary_key=True, autoincrement=True),
        col("orders_status_history", "orders_id", _id_type(), sa.ForeignKey(orders.c.orders_id), nullable=False),
        col("orders_status_history", "orders_status_id", _id_type(), nullable=False),
        col("orders_status_history", "date_added", sa.DateTime, nullable=False),
        col("orders_status_history", "customer_notified", sa.SmallInteger, nullable=False, server_default="0", default=0),
        col("orders_status_history", "comments", sa.Text, nullable=True),
        **MYSQL_TABLE_KWARGS,
    )
    return {"customers": customers, "orders_status": orders_status, "orders": orders, "orders_status_history": history}
