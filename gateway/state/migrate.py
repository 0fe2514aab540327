"""Creating or upgrading the state store's schema (`flask --app wsgi init-db`)."""
from __future__ import annotations

import sqlalchemy as sa

from .tables import metadata, schema_version_table

SCHEMA_VERSION = 1


def init_db(store) -> None:
    """Create or upgrade the gateway tables; idempotent, safe on every release."""
    metadata.create_all(store.engine, checkfirst=True)
    with store.immediate() as conn:
        row = conn.execute(sa.select(schema_version_table.c.version).where(schema_version_table.c.id == 1)).first()
        if row is None:
            conn.execute(schema_version_table.insert().values(id=1, version=SCHEMA_VERSION))
