"""`init-ops-demo` (the reference schema with sample rows) and `configure-ops` (a hosted store's API client)."""
from __future__ import annotations

import sys

import click
from flask.cli import with_appcontext

from .. import audit, ops
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


@click.command("configure-ops")
@click.option("--url", required=True, help="the store's base URL (the token is at <url>/api/oauth/token)")
@click.option("--client-id", "client_id", required=True, help="the API client id from OnPrintShop's admin")
@click.option("--client-secret-stdin", "secret_from_stdin", is_flag=True, required=True,
              help="read the API client secret from standard input")
@with_appcontext
@one_line_errors
def configure_ops_command(url, client_id, secret_from_stdin):
    """Connect a hosted store's API (OPS_BACKEND=api): check the client and save it, the secret encrypted."""
    secret = sys.stdin.readline().strip()
    if not secret:
        raise click.ClickException("client_secret: standard input was empty; pipe the API client secret in")
    rt = runtime()
    result = ops.configure_api(rt, url=url, client_id=client_id, client_secret=secret)
    audit.record(rt, "command line", "configure onprintshop api", result.detail)
    if not result.ok:
        raise click.ClickException(result.message)
    click.echo(result.message)
    if not rt.ops.connectable:
        click.echo("note: OPS_BACKEND is not api: the saved client is used once it is", err=True)
