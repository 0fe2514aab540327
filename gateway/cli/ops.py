"""`init-ops-demo`: the reference schema with sample rows, in the OnPrintShop database."""
from __future__ import annotations

import click
from flask.cli import with_appcontext

from .. import ops
from .common import one_line_errors, runtime


@click.command("init-ops-demo")
@click.option("--force", is_flag=True, help="drop the reference tables first if they exist")
@with_appcontext
@one_line_errors
def init_ops_demo_command(force):
    """Create the reference schema with sample rows in OPS_DATABASE_URL."""
    backend = runtime().ops
    try:
        ops.create_demo(backend, force=force)
    except (ops.DemoTablesExist, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(ops.demo_summary(backend))
