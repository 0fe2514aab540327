"""What every command shares: one-line errors, never a traceback, and the status printout."""
from __future__ import annotations

import functools
import json

import click
import sqlalchemy as sa
from flask import current_app

from ..errors import ConfigError, SchemaError, VaultError
from ..ops import OpsError
from ..runtime import Runtime
from ..zoho.errors import ZohoError


def runtime() -> Runtime:
    return current_app.extensions["gateway"]


def echo_status(figures: dict, as_json: bool, counts, extra=()) -> None:
    """What `queue status` and `inbox status` print: one JSON object, or `key: value` lines for
    `counts`, then `extra` lines, the oldest pending age and the last error."""
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
        except (ConfigError, SchemaError, VaultError, ZohoError, OpsError) as exc:
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


