"""Every table of the gateway's own state store (`DATABASE_URL`), on one `metadata`.

`init-db` (`migrate.init_db`) creates those missing; modules import the tables they work on."""
from __future__ import annotations

import sqlalchemy as sa

from .dialect import ID

metadata = sa.MetaData()

# -- core ----------------------------------------------------------------------------------------
settings_table = sa.Table(
    "gw_settings",
    metadata,
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),  # JSON
    sa.Column("updated_at", sa.Double, nullable=False),
)

leases_table = sa.Table(
    "gw_leases",
    metadata,
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("holder", sa.String(100), nullable=True),
    sa.Column("expires_at", sa.Double, nullable=False, default=0.0),
)

# Deployment-wide call limits (gateway/state/limiter.py): one row per permit of each limiter
# ("zoho", "ops_api"), plus slot -1 holding the time a 429's Retry-After ends.
permits_table = sa.Table(
    "gw_permits",
    metadata,
    sa.Column("limiter", sa.String(32), primary_key=True),
    sa.Column("slot", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("holder", sa.String(64), nullable=True),
    sa.Column("free_at", sa.Double, nullable=False, default=0.0),  # epoch: may be taken from then on
)

# The schema version the releases before migrations recorded (kept so those databases are adopted).
schema_version_table = sa.Table(
    "gw_schema_version",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("version", sa.Integer, nullable=False),
)

secrets_table = sa.Table(
    "gw_secrets",
    metadata,
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("token", sa.Text, nullable=False),  # a MultiFernet token, never plaintext
    sa.Column("updated_at", sa.Double, nullable=False),
)

# -- the admin ------------------------------------------------------------------------------------
audit_table = sa.Table(
    "gw_audit",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.Double, nullable=False, index=True),
    sa.Column("who", sa.String(100), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
)

login_failures_table = sa.Table(
    "gw_login_failures",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("address", sa.String(64), nullable=False, index=True),
    sa.Column("at", sa.Double, nullable=False, index=True),
)

# Admin sessions ended by logout, kept until they would have expired anyway.
ended_sessions_table = sa.Table(
    "gw_admin_ended_sessions",
    metadata,
    sa.Column("session_id", sa.String(64), primary_key=True),
    sa.Column("until", sa.Double, nullable=False, index=True),
)

# -- what inbound and outbound share ---------------------------------------------------------------
links_table = sa.Table(
    "gw_links",
    metadata,
    sa.Column("module", sa.String(32), primary_key=True),
    sa.Column("ops_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("zoho_id", sa.String(64), nullable=False),
    sa.Column("sent_hash", sa.String(64), nullable=True),
    sa.Column("updated_at", sa.Double, nullable=False),
    sa.Index("ix_gw_links_zoho", "module", "zoho_id", unique=True),
)

loopguard_table = sa.Table(
    "gw_loopguard",
    metadata,
    sa.Column("table_key", sa.String(32), primary_key=True),
    sa.Column("ops_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("last_modified", sa.String(19), primary_key=True),  # 'YYYY-MM-DD HH:MM:SS', naive, OPS_TIMEZONE
    sa.Column("recorded_at", sa.Double, nullable=False),
    sa.Index("ix_gw_loopguard_recorded", "recorded_at"),
)

# -- inbound ----------------------------------------------------------------------------------------
inbox_table = sa.Table(
    "gw_inbox",
    metadata,
    sa.Column("id", ID, primary_key=True, autoincrement=True),
    sa.Column("received_at", sa.Double, nullable=False),
    sa.Column("source", sa.String(16), nullable=False),
    sa.Column("module", sa.String(16), nullable=False),
    sa.Column("zoho_id", sa.String(64), nullable=False),
    sa.Column("ops_id_hint", sa.BigInteger, nullable=True),
    sa.Column("modified_time", sa.Double, nullable=False),
    sa.Column("time_given", sa.Boolean, nullable=False, default=True),
    sa.Column("fields", sa.Text, nullable=False),  # JSON of the validated values
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),  # 'pending' | 'done'
    sa.Column("outcome", sa.String(16), nullable=True),
    sa.Column("reason", sa.String(500), nullable=True),
    sa.Column("ops_id", sa.BigInteger, nullable=True),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("next_attempt_at", sa.Double, nullable=False, default=0.0),
    sa.Column("finished_at", sa.Double, nullable=True),
    sa.Index("ix_gw_inbox_pending", "state", "next_attempt_at"),
    sa.Index("ix_gw_inbox_record", "module", "zoho_id", "state"),
    sa.Index("ix_gw_inbox_received", "received_at"),
)

# Per Zoho record: the last update applied from Zoho (what "duplicate" and "stale" are judged
# against); its row is also the lock that serialises one record's deliveries.
applied_table = sa.Table(
    "gw_inbox_applied",
    metadata,
    sa.Column("module", sa.String(16), primary_key=True),
    sa.Column("zoho_id", sa.String(64), primary_key=True),
    sa.Column("modified_time", sa.Double, nullable=True),  # NULL: only a lock row so far
    sa.Column("fingerprint", sa.String(64), nullable=True),
    sa.Column("ops_id", sa.BigInteger, nullable=True),
    sa.Column("updated_at", sa.Double, nullable=False),
)

notify_pending_table = sa.Table(
    "gw_notify_pending",
    metadata,
    sa.Column("module", sa.String(16), primary_key=True),
    sa.Column("zoho_id", sa.String(32), primary_key=True),
    sa.Column("received_at", sa.Double, nullable=False),   # latest callback for this record
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("next_try_at", sa.Double, nullable=False),
    sa.Column("last_error", sa.Text, nullable=True),
)

# -- outbound -----------------------------------------------------------------------------------------
jobs_table = sa.Table(
    "gw_jobs",
    metadata,
    sa.Column("id", ID, primary_key=True, autoincrement=True),
    sa.Column("module", sa.String(16), nullable=False),
    sa.Column("ops_id", sa.BigInteger, nullable=False),
    # "<module>:<ops_id>" while pending/in_flight/dead, NULL when done: one live job per record.
    sa.Column("active_key", sa.String(48), nullable=True),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("force_send", sa.Boolean, nullable=False, default=False),
    sa.Column("requeue", sa.Boolean, nullable=False, default=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("next_try_at", sa.Double, nullable=False),
    sa.Column("lease_holder", sa.String(100), nullable=True),
    sa.Column("lease_expires_at", sa.Double, nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("updated_at", sa.Double, nullable=False),
    sa.Index("ux_gw_jobs_active", "active_key", unique=True),
    sa.Index("ix_gw_jobs_claim", "state", "module", "next_try_at"),
    sa.Index("ix_gw_jobs_holder", "lease_holder"),
)

# The change poller's memory of the row versions it queued, within its re-read window.
polled_versions_table = sa.Table(
    "gw_polled_versions",
    metadata,
    sa.Column("table_key", sa.String(16), primary_key=True),
    sa.Column("ops_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("last_modified", sa.String(19), primary_key=True),  # 'YYYY-MM-DD HH:MM:SS', OPS_TIMEZONE
    sa.Index("ix_gw_polled_versions_age", "table_key", "last_modified"),
)

event_ids_table = sa.Table(
    "gw_event_ids",
    metadata,
    sa.Column("webhook_id", sa.String(255), primary_key=True),
    sa.Column("received_at", sa.Double, nullable=False, index=True),
)

# -- OnPrintShop's API (OPS_BACKEND=api) -----------------------------------------------------------------
# The gateway's copy of each customer and order it has read through the API: what the push sends,
# and what a new read is compared with. `changed_at` (naive, OPS_TIMEZONE) is when the gateway
# first saw this content: the change poller walks it as it walks `last_modified` in a database.
ops_records_table = sa.Table(
    "gw_ops_records",
    metadata,
    sa.Column("kind", sa.String(16), primary_key=True),          # "customers" | "orders"
    sa.Column("ops_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("data", sa.Text, nullable=False),                    # JSON of the fields the gateway uses
    sa.Column("content", sa.String(64), nullable=False),           # a hash of `data`
    sa.Column("customer_id", sa.BigInteger, nullable=True),        # an order's customer
    sa.Column("modified", sa.DateTime, nullable=True),             # an order's order_last_modified_date
    sa.Column("changed_at", sa.DateTime, nullable=False),
    sa.Column("first_seen", sa.DateTime, nullable=False),
    sa.Index("ix_gw_ops_records_changed", "kind", "changed_at", "ops_id"),
    sa.Index("ix_gw_ops_records_customer", "kind", "customer_id"),
)

# -- Zoho -------------------------------------------------------------------------------------------------
meter_table = sa.Table(
    "gw_zoho_meter",
    metadata,
    sa.Column("kind", sa.String(16), primary_key=True),  # "calls" | "pushes"
    sa.Column("bucket", sa.BigInteger, primary_key=True, autoincrement=False),  # epoch // BUCKET_SECONDS
    sa.Column("count", sa.BigInteger, nullable=False),
)
