"""Revision 0002: the permits of the one call limiter (`gw_permits`) and the hosted store's copy of
records (`gw_ops_records`); the old Zoho slot leases are dropped from `gw_leases`."""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gw_permits",
        sa.Column("limiter", sa.String(32), primary_key=True),
        sa.Column("slot", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("holder", sa.String(64), nullable=True),
        sa.Column("free_at", sa.Double, nullable=False),
    )
    op.create_table(
        "gw_ops_records",
        sa.Column("kind", sa.String(16), primary_key=True),
        sa.Column("ops_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("content", sa.String(64), nullable=False),
        sa.Column("customer_id", sa.BigInteger, nullable=True),
        sa.Column("modified", sa.DateTime, nullable=True),
        sa.Column("changed_at", sa.DateTime, nullable=False),
        sa.Column("first_seen", sa.DateTime, nullable=False),
    )
    op.create_index("ix_gw_ops_records_changed", "gw_ops_records", ["kind", "changed_at", "ops_id"])
    op.create_index("ix_gw_ops_records_customer", "gw_ops_records", ["kind", "customer_id"])
    leases = sa.table("gw_leases", sa.column("name", sa.String))
    op.execute(leases.delete().where(leases.c.name.like("zoho-slot-%")))


def downgrade() -> None:
    op.drop_index("ix_gw_ops_records_customer", "gw_ops_records")
    op.drop_index("ix_gw_ops_records_changed", "gw_ops_records")
    op.drop_table("gw_ops_records")
    op.drop_table("gw_permits")
