"""The command line (`flask --app wsgi <command>`): the core commands, plus each concern's own.

Every command fails with one line naming the problem, never a traceback.
"""
from __future__ import annotations

import functools
import importlib
import os
import secrets as pysecrets
import signal
import sys

import click
import sqlalchemy as sa
from flask import current_app
from flask.cli import with_appcontext
from werkzeug.security import generate_password_hash

from . import runtime
from .errors import ConfigError, VaultError
from .store import init_db
from .zoho.errors import ZohoError

# Concerns that add commands: each module has `register(app)`.
COMMAND_MODULES = (
    "gateway.ops.commands",
    "gateway.zoho.commands",
    "gateway.inbound.commands",
    "gateway.outbound.commands",
)

ADMIN_PASSWORD_SETTING = "admin.password_hash"


def echo_status(figures: dict, as_json: bool, counts, extra=()) -> None:
    """What `queue status` and `inbox status` print: one JSON object, or `key: value` lines for
    `counts`, then `extra` lines, the oldest pending age and the last error."""
    import json

    if as_json:
        click.echo(json.dumps(figures))
        return
    for key in counts:
        click.echo(f"{key}: {figures[key]}")
    for line in extra:
        click.echo(line)
    oldest = figures["oldest_pending_seconds"]
    click.echo(f"oldest pending: {'none' if oldest is None else f'{oldest:.0f} s'}")
    click.echo(f"last error: {figures['last_error'] or 'none'}")


def one_line_errors(func):
    """Turn the errors a person can act on into one `Error: …` line and a non-zero exit."""

    @functools.wraps(func)
    def wrapped(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except (ConfigError, VaultError, ZohoError) as exc:
            raise click.ClickException(str(exc)) from None
        except sa.exc.SQLAlchemyError as exc:
            raise click.ClickException(describe_database_error(exc)) from None

    return wrapped


def describe_database_error(exc: Exception) -> str:
    """One line for a database failure: what the driver said (no SQL, no parameters) and what to do."""
    original = getattr(exc, "orig", None) or exc
    said = (str(original).strip().splitlines() or [exc.__class__.__name__])[0][:300]
    if "no such table" in said or "doesn't exist" in said or "does not exist" in said:
        return f"a database table is missing ({said}): run `flask --app wsgi init-db` first"
    return f"the database did not answer as expected: {said}"


@click.command("init-db")
@with_appcontext
@one_line_errors
def init_db_command():
    """Create or upgrade the gateway tables (safe on every release)."""
    init_db(runtime.current().store)
    click.echo("gateway tables ready")


@click.command("rotate-keys")
@with_appcontext
@one_line_errors
def rotate_keys_command():
    """Re-encrypt every stored secret under the newest Fernet key."""
    rt = runtime.current()
    count = rt.vault.rotate_all(rt.store)
    click.echo(f"re-encrypted {count} secrets under the newest key")


def store_admin_password(rt, password: str) -> None:
    rt.store.set_setting(ADMIN_PASSWORD_SETTING, generate_password_hash(password))


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
    store_admin_password(runtime.current(), password)
    click.echo("admin password stored")


def is_embedded_ops_database(app) -> bool:
    """Is OPS_DATABASE_URL development's default, the SQLite file ops.db in the instance folder?"""
    url = sa.engine.make_url(app.config["OPS_DATABASE_URL"])
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return False
    return os.path.realpath(url.database) == os.path.realpath(os.path.join(app.instance_path, "ops.db"))


@click.command("dev-bootstrap")
@click.option("--url", default="http://127.0.0.1:8000/admin/", show_default=True)
@with_appcontext
@one_line_errors
def dev_bootstrap_command(url):
    """(make run) Prepare a development instance: tables, demo OnPrintShop data, first admin password."""
    rt = runtime.current()
    if current_app.config["GATEWAY_ENV"] != "development":
        raise click.ClickException("dev-bootstrap is for GATEWAY_ENV=development only")
    init_db(rt.store)
    from .ops import demo

    if not is_embedded_ops_database(current_app):
        # An empty database elsewhere may be a real store's that is about to be set up: demo
        # customers and orders in it would be synced to Zoho as real ones. Only the embedded file.
        click.echo("OPS_DATABASE_URL is not the embedded demo database (instance/ops.db): no demo rows written; "
                   "`flask --app wsgi init-ops-demo` creates them where you choose")
    elif demo.create_if_absent(rt.ops):
        click.echo("created the demo OnPrintShop database with sample customers and orders")
    click.echo(f"admin page: {url}")
    if not rt.store.get_setting(ADMIN_PASSWORD_SETTING) and not current_app.config.get("GATEWAY_ADMIN_PASSWORD_HASH"):
        password = pysecrets.token_urlsafe(12)
        store_admin_password(rt, password)
        click.echo(f"admin password (shown once; change it with `flask --app wsgi set-admin-password`): {password}")


@click.command("worker")
@with_appcontext
@one_line_errors
def worker_command():
    """Run all background work in the foreground until SIGTERM (a `worker:` process)."""
    from .background import BackgroundRunner

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


def init_app(app) -> None:
    for command in (init_db_command, rotate_keys_command, set_admin_password_command, dev_bootstrap_command, worker_command):
        app.cli.add_command(command)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.register(app)
