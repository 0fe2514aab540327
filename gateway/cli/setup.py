"""Setting a deployment up and running it: init-db, rotate-keys, set-admin-password, dev-bootstrap, worker."""
from __future__ import annotations

import secrets as pysecrets
import signal
import sys

import click
from flask import current_app
from flask.cli import with_appcontext

from .. import ops
from ..admin import auth
from ..background import BackgroundRunner
from ..state.migrate import init_db
from .common import one_line_errors, runtime


@click.command("init-db")
@with_appcontext
@one_line_errors
def init_db_command():
    """Create or upgrade the gateway tables (safe on every release)."""
    init_db(runtime().store)
    click.echo("gateway tables ready")


@click.command("rotate-keys")
@with_appcontext
@one_line_errors
def rotate_keys_command():
    """Re-encrypt every stored secret under the newest Fernet key."""
    rt = runtime()
    count = rt.vault.rotate_all(rt.store)
    click.echo(f"re-encrypted {count} secrets under the newest key")


@click.command("set-admin-password")
@click.option("--stdin", "from_stdin", is_flag=True, help="read the password from standard input")
@with_appcontext
@one_line_errors
def set_admin_password_command(from_stdin):
    """Store a salted hash of a new admin password."""
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("New admin password", hide_input=True, confirmation_prompt=True)
    if len(password) < 10:
        raise click.ClickException("the password must have at least 10 characters")
    auth.store_password(runtime(), password)
    click.echo("admin password stored")


@click.command("dev-bootstrap")
@click.option("--url", default="http://127.0.0.1:8000/admin/", show_default=True)
@with_appcontext
@one_line_errors
def dev_bootstrap_command(url):
    """(make run) Prepare a development instance: tables, demo OnPrintShop data, first admin password."""
    rt = runtime()
    if current_app.config["GATEWAY_ENV"] != "development":
        raise click.ClickException("dev-bootstrap is for GATEWAY_ENV=development only")
    init_db(rt.store)
    if not ops.is_embedded_demo(rt.ops, current_app.instance_path):
        # An empty database elsewhere may be a real store's that is about to be set up: demo
        # customers and orders in it would be synced to Zoho as real ones. Only the embedded file.
        click.echo("OPS_DATABASE_URL is not the embedded demo database (instance/ops.db): no demo rows written; "
                   "`flask --app wsgi init-ops-demo` creates them where you choose")
    elif ops.create_demo(rt.ops, only_if_absent=True):
        click.echo("created the demo OnPrintShop database with sample customers and orders")
    click.echo(f"admin page: {url}")
    if not rt.store.get_setting(auth.ADMIN_PASSWORD_SETTING) and not current_app.config.get("GATEWAY_ADMIN_PASSWORD_HASH"):
        password = pysecrets.token_urlsafe(12)
        auth.store_password(rt, password)
        click.echo(f"admin password (shown once; change it with `flask --app wsgi set-admin-password`): {password}")


@click.command("worker")
@with_appcontext
@one_line_errors
def worker_command():
    """Run all background work in the foreground until SIGTERM (a `worker:` process)."""
    runner = BackgroundRunner(current_app._get_current_object())

    def _stop(signum, _frame):
        click.echo(f"signal {signum}: stopping background work")
        runner.stop_event.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    runner.start()
    click.echo(f"worker running {len(runner.threads)} background tasks; SIGTERM stops it")
    while not runner.stop_event.wait(1.0):
        pass
    runner.stop()
