"""Revision 0001: the schema of the last release before migrations (its `init-db`), table by table.

Frozen here on purpose: a migration never imports `gateway.state.tables`, which keeps changing.
"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Auto-increment ids: BIGINT, but INTEGER on SQLite (only that is its rowid).
ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")

# The `default=` values of that release's columns were applied by SQLAlchemy on insert, never
# by the database, so no column here has a server default.


def upgrade() -> None:
    op.create_table(
        "gw_settings",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("updated_at", sa.Double, nullable=False),
    )
    op.create_table(
        "gw_leases",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("holder", sa.String(100), nullable=True),
        sa.Column("expires_at", sa.Double, nullable=False),
    )
    schema_version = op.create_table(
        "gw_schema_version",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("version", sa.Integer, nullable=False),
    )
    # The row that release's init-db wrote: a database made here equals one it made.
    op.bulk_insert(schema_version, [{"id": 1, "version": 1}])
    op.create_table(
        "gw_secrets",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("token", sa.Text, nullable=False),
        sa.Column("updated_at", sa.Double, nullable=False),
    )

    op.create_table(
        "gw_audit",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.Double, nullable=False),
        sa.Column("who", sa.String(100), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
    )
    op.create_index("ix_gw_audit_at", "gw_audit", ["at"])
    op.create_table(
        "gw_login_failures",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("address", sa.String(64), nullable=False),
        sa.Column("at", sa.Double, nullable=False),
    )
    op.create_index("ix_gw_login_failures_address", "gw_login_failures", ["address"])
    op.create_index("ix_gw_login_failures_at", "gw_login_failures", ["at"])
    op.create_table(
        "gw_admin_ended_sessions",
        sa.Column("session_id", sa.String(64), primary_key=True),
        sa.Column("until", sa.Double, nullable=False),
    )
    op.create_index("ix_gw_admin_ended_sessions_until", "gw_admin_ended_sessions", ["until"])

    op.create_table(
        "gw_links",
        sa.Column("module", sa.String(32), primary_key=True),
        sa.Column("ops_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("zoho_id", sa.String(64), nullable=False),
        sa.Column("sent_hash", sa.String(64), nullable=True),
        sa.Column("updated_at", sa.Double, nullable=False),
    )
    op.create_index("ix_gw_links_zoho", "gw_links", ["module", "zoho_id"], unique=True)
    op.create_table(
        "gw_loopguard",
        sa.Column("table_key", sa.String(32), primary_key=True),
        sa.Column("ops_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("last_modified", sa.String(19), primary_key=True),
        sa.Column("recorded_at", sa.Double, nullable=False),
    )
    op.create_index("ix_gw_loopguard_recorded", "gw_loopguard", ["recorded_at"])

    op.create_table(
        "gw_inbox",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("received_at", sa.Double, nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("module", sa.String(16), nullable=False),
        sa.Column("zoho_id", sa.String(64), nullable=False),
        sa.Column("ops_id_hint", sa.BigInteger, nullable=True),
        sa.Column("modified_time", sa.Double, nullable=False),
        sa.Column("time_given", sa.Boolean, nullable=False),
        sa.Column("fields", sa.Text, nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=True),
        sa.Column("reason", sa.String(500), nullable=True),
        sa.Column("ops_id", sa.BigInteger, nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", sa.Double, nullable=False),
        sa.Column("finished_at", sa.Double, nullable=True),
    )
    op.create_index("ix_gw_inbox_pending", "gw_inbox", ["state", "next_attempt_at"])
    op.create_index("ix_gw_inbox_record", "gw_inbox", ["module", "zoho_id", "state"])
    op.create_index("ix_gw_inbox_received", "gw_inbox", ["received_at"])
    op.create_table(
        "gw_inbox_applied",
        sa.Column("module", sa.String(16), primary_key=True),
        sa.Column("zoho_id", sa.String(64), primary_key=True),
        sa.Column("modified_time", sa.Double, nullable=True),
        sa.Column("fingerprint", sa.String(64), nullable=True),
        sa.Column("ops_id", sa.BigInteger, nullable=True),
        sa.Column("updated_at", sa.Double, nullable=False),
    )
    op.create_table(
        "gw_notify_pending",
        sa.Column("module", sa.String(16), primary_key=True),
        sa.Column("zoho_id", sa.String(32), primary_key=True),
        sa.Column("received_at", sa.Double, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_try_at", sa.Double, nullable=False),
        sa.Column("last_error", sa.Text, nullable=True),
    )

    op.create_table(
        "gw_jobs",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("module", sa.String(16), nullable=False),
        sa.Column("ops_id", sa.BigInteger, nullable=False),
        sa.Column("active_key", sa.String(48), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("force_send", sa.Boolean, nullable=False),
        sa.Column("requeue", sa.Boolean, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_try_at", sa.Double, nullable=False),
        sa.Column("lease_holder", sa.String(100), nullable=True),
        sa.Column("lease_expires_at", sa.Double, nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("updated_at", sa.Double, nullable=False),
    )
    op.create_index("ux_gw_jobs_active", "gw_jobs", ["active_key"], unique=True)
    op.create_index("ix_gw_jobs_claim", "gw_jobs", ["state", "module", "next_try_at"])
    op.create_index("ix_gw_jobs_holder", "gw_jobs", ["lease_holder"])
    op.create_table(
        "gw_polled_versions",
        sa.Column("table_key", sa.String(16), primary_key=True),
        sa.Column("ops_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("last_modified", sa.String(19), primary_key=True),
    )
    op.create_index("ix_gw_polled_versions_age", "gw_polled_versions", ["table_key", "last_modified"])
    op.create_table(
        "gw_event_ids",
        sa.Column("webhook_id", sa.String(255), primary_key=True),
        sa.Column("received_at", sa.Double, nullable=False),
    )
    op.create_index("ix_gw_event_ids_received_at", "gw_event_ids", ["received_at"])

    op.create_table(
        "gw_zoho_meter",
        sa.Column("kind", sa.String(16), primary_key=True),
        sa.Column("bucket", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("count", sa.BigInteger, nullable=False),
    )


TABLES = (
    "gw_settings", "gw_leases", "gw_schema_version", "gw_secrets", "gw_audit", "gw_login_failures",
    "gw_admin_ended_sessions", "gw_links", "gw_loopguard", "gw_inbox", "gw_inbox_applied", "gw_notify_pending",
    "gw_jobs", "gw_polled_versions", "gw_event_ids", "gw_zoho_meter",
)


def downgrade() -> None:
    for name in reversed(TABLES):
        op.drop_table(name)  # its indexes go with it
