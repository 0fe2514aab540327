"""Creating or upgrading the state store's schema (`flask --app wsgi init-db`) with the Alembic
revisions in `gateway/state/migrations`, adopting databases made by the releases before them."""
from __future__ import annotations

import functools
import os
from typing import TYPE_CHECKING

import sqlalchemy as sa

from ..errors import SchemaError
from . import dialect as dialects
from .tables import metadata

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

# Alembic is imported where it is used: web workers and other commands never load it (~0.1 s).

MIGRATIONS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "migrations")
VERSION_TABLE = "gw_alembic_version"  # prefixed like every gateway table: the database may be shared
ADOPTED_REVISION = "0001"  # the schema of the releases before migrations (gw_schema_version 1)


def alembic_config(connection=None) -> Config:
    """An Alembic `Config` for the state store's migrations, running on `connection`."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", MIGRATIONS.replace("%", "%%"))
    config.attributes["connection"] = connection
    return config


@functools.cache
def script_directory() -> ScriptDirectory:
    """The migration scripts, read once per process."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config())


def init_db(store) -> None:
    """Create the gateway tables or upgrade them to the newest revision; idempotent, safe on every
    release. A database of the releases before migrations is adopted: stamped at revision 0001,
    then upgraded. One that has only some gateway tables is refused with a SchemaError."""
    from alembic.runtime.migration import MigrationContext

    script = script_directory()
    heads = set(script.get_heads())
    with store.engine.connect() as conn:
        conn = dialects.begin_immediate(conn)
        with dialects.migration_lock(conn), conn.begin():
            context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
            tables = set(sa.inspect(conn).get_table_names())
            current = set(context.get_current_heads()) if VERSION_TABLE in tables else set()
            if not current:
                if _made_before_migrations(conn, tables, script):
                    context.stamp(script, ADOPTED_REVISION)
                    current = {ADOPTED_REVISION}
            if current != heads:
                _refuse_unknown(current, script)
                _upgrade(conn, script)
                tables = set(sa.inspect(conn).get_table_names())
            missing = sorted(set(metadata.tables) - tables)
            if missing:
                raise SchemaError(f"the state store is at the newest revision ({', '.join(sorted(heads))}) but has no "
                                  f"table {', '.join(missing)}: dropped by hand (restore a backup), or added to "
                                  f"gateway/state/tables.py without a migration")


def _made_before_migrations(conn, tables: set[str], script: ScriptDirectory) -> bool:
    """True for a complete database of the releases before migrations, False for one without any
    gateway table; a SchemaError for anything in between, which init-db will not guess about."""
    adopted = script.get_revision(ADOPTED_REVISION).module.TABLES
    present = [name for name in adopted if name in tables]
    if not present:
        return False
    missing = [name for name in adopted if name not in tables]
    if missing:
        raise SchemaError(f"the state store has {len(present)} of the {len(adopted)} gateway tables but not "
                          f"{', '.join(missing)}, and no {VERSION_TABLE}: a half-made database is left untouched; "
                          f"restore it from a backup, or drop its gw_ tables if they hold nothing")
    version = conn.execute(sa.text("SELECT version FROM gw_schema_version WHERE id = :id"), {"id": 1}).scalar()
    if version not in (None, 1):
        raise SchemaError(f"gw_schema_version says version {version}; init-db adopts only version 1 "
                          f"(the release before migrations)")
    return True


def _refuse_unknown(current: set[str], script: ScriptDirectory) -> None:
    """A SchemaError when the database is at a revision this release has no script for."""
    unknown = sorted(rev for rev in current if rev not in {r.revision for r in script.walk_revisions()})
    if unknown:
        raise SchemaError(f"the state store is at revision {', '.join(unknown)}, which this release does not know: "
                          f"a newer release migrated it; deploy that release again or restore a backup")


def _upgrade(conn, script: ScriptDirectory) -> None:
    """Run every revision from the database's current one to the head, inside `conn`'s transaction."""
    from alembic.runtime.environment import EnvironmentContext

    def upgrade(revision, _context):
        return script._upgrade_revs("heads", revision)

    config = alembic_config(conn)
    with EnvironmentContext(config, script, fn=upgrade, destination_rev="heads"):
        script.run_env()
