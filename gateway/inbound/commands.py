"""Inbound commands: `webhook-secret [--rotate]`, `inbox status [--json]`, `inbox retry-failed`,
and `catch-up` (defined beside its code)."""
from __future__ import annotations

import click
from flask.cli import AppGroup, with_appcontext

from .. import runtime
from ..cli import echo_status, one_line_errors
from . import catchup, inbox, secrets


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


inbox_cli = AppGroup("inbox", help="Deliveries from Zoho: what waits for OnPrintShop, and failed ones.")


@inbox_cli.command("status")
@click.option("--json", "as_json", is_flag=True, help="one JSON object")
@one_line_errors
def inbox_status_command(as_json):
    """Deliveries waiting to be written to OnPrintShop, and those given up on."""
    echo_status(inbox.status(runtime.current()), as_json, ("pending", "failed"))


@inbox_cli.command("retry-failed")
@one_line_errors
def inbox_retry_failed_command():
    """Put the deliveries OnPrintShop kept refusing back in line (after fixing the cause)."""
    rt = runtime.current()
    moved = inbox.retry_failed(rt)
    if moved:
        from ..admin import audit

        audit.record(rt, "command line", "retry failed deliveries", f"{moved} {'delivery' if moved == 1 else 'deliveries'}")
    click.echo(f"put {moved} failed {'delivery' if moved == 1 else 'deliveries'} back in line")


def register(app) -> None:
    app.cli.add_command(webhook_secret_command)
    app.cli.add_command(inbox_cli)
    catchup.register(app)
