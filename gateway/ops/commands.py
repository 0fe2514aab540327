"""Commands for the OnPrintShop database: `init-ops-demo [--force]`.

`register(app)` also loads the mapping and checks the two time zone settings once, so a wrong
`instance/mapping.toml`, `OPS_TIMEZONE` or `GATEWAY_ZOHO_TIMEZONE` stops the app at start-up
with one line naming it (create_app registers the commands).
"""
from __future__ import annotations

import click
from flask.cli import with_appcontext

from .. import runtime
from ..cli import one_line_errors
from . import demo, mapping
from .database import zone


@click.command("init-ops-demo")
@click.option("--force", is_flag=True, help="drop the reference tables first if they exist")
@with_appcontext
@one_line_errors
def init_ops_demo_command(force):
    """Create the §5 reference schema with sample rows in OPS_DATABASE_URL."""
    ops = runtime.current().ops
    try:
        demo.create(ops, force=force)
    except demo.TablesExist as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(
        f"created {', '.join(t.name for t in ops.tables.values())} with {len(demo.DEMO_CUSTOMERS)} customers "
        f"and {len(demo.DEMO_ORDERS)} orders"
    )


def register(app) -> None:
    mapping.load(app.instance_path)  # validated at start-up: raises ConfigError naming the bad key
    zone(app.config["OPS_TIMEZONE"], "OPS_TIMEZONE")
    zone(app.config["GATEWAY_ZOHO_TIMEZONE"], "GATEWAY_ZOHO_TIMEZONE")
    app.cli.add_command(init_ops_demo_command)
