"""Inbound commands: `webhook-secret [--rotate]`, and `catch-up` (defined beside its code)."""
from __future__ import annotations

import click
from flask.cli import with_appcontext

from .. import runtime
from ..cli import one_line_errors
from . import catchup, secrets


@click.command("webhook-secret")
@click.option("--rotate", is_flag=True, help="make a new secret; the old one stays valid for 24 hours")
@with_appcontext
@one_line_errors
def webhook_secret_command(rotate):
    """Print the webhook secret and the webhook URLs to configure in Zoho."""
    rt = runtime.current()
    secret = secrets.rotate_webhook_secret(rt) if rotate else secrets.webhook_secrets(rt)["current"]
    click.echo(f"secret {secret}")
    for url in secrets.webhook_urls(rt).values():
        click.echo(f"url {url}")
    if rotate:
        click.echo("the previous secret stays valid for 24 hours: update both Zoho webhooks before then", err=True)
    if not rt.config.get("GATEWAY_PUBLIC_URL"):
        click.echo("note: GATEWAY_PUBLIC_URL is not set; the URLs above use a local address", err=True)


def register(app) -> None:
    app.cli.add_command(webhook_secret_command)
    catchup.register(app)
