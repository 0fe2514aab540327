"""Inbound commands: `webhook-secret`, `inbox status`, `inbox retry-failed`, `catch-up`."""
from __future__ import annotations

import click
from flask.cli import AppGroup, with_appcontext

from .. import audit
from ..inbound import catchup, reports, secrets
from ..zoho import connection
from .common import echo_status, one_line_errors, runtime


@click.command("webhook-secret")
@click.option("--rotate", is_flag=True, help="make a new secret; the old one stays valid for 24 hours")
@click.option("--revoke-previous", is_flag=True,
              help="end every previous secret's grace now (after a leak); with --rotate, the replaced one's too")
@with_appcontext
@one_line_errors
def webhook_secret_command(rotate, revoke_previous):
    """Print the webhook secret and the webhook URLs to configure in Zoho."""
    rt = runtime()
    secret = secrets.rotate_webhook_secret(rt) if rotate else secrets.webhook_secrets(rt)["current"]
    if revoke_previous:
        ended = secrets.revoke_previous_webhook_secrets(rt)
        audit.record(rt, "command line", "end webhook secrets' grace", f"webhook: {ended} ended")
        click.echo(f"ended the grace of {ended} previous secret{'s' if ended != 1 else ''}: only this secret is accepted now",
                   err=True)
    click.echo(f"secret {secret}")
    for url in secrets.webhook_urls(rt).values():
        click.echo(f"url {url}")
    if rotate and not revoke_previous:
        click.echo("the previous secret stays valid for 24 hours: update both Zoho webhooks before then", err=True)
    if not rt.config.get("GATEWAY_PUBLIC_URL"):
        click.echo("note: GATEWAY_PUBLIC_URL is not set; the URLs above use a local address", err=True)


inbox_cli = AppGroup("inbox", help="Deliveries from Zoho: what waits for OnPrintShop, and failed ones.")


@inbox_cli.command("status")
@click.option("--json", "as_json", is_flag=True, help="one JSON object")
@one_line_errors
def inbox_status_command(as_json):
    """Deliveries waiting to be written to OnPrintShop, and those given up on."""
    echo_status(reports.status(runtime()), as_json, ("pending", "failed"))


@inbox_cli.command("retry-failed")
@one_line_errors
def inbox_retry_failed_command():
    """Put the deliveries OnPrintShop kept refusing back in line (after fixing the cause)."""
    rt = runtime()
    moved = reports.retry_failed(rt)
    if moved:
        audit.record(rt, "command line", "retry failed deliveries", f"{moved} {'delivery' if moved == 1 else 'deliveries'}")
    click.echo(f"put {moved} failed {'delivery' if moved == 1 else 'deliveries'} back in line")


@click.command("catch-up")
@click.option("--since", help="ISO 8601 time (with offset; UTC if none) instead of the last catch-up")
@with_appcontext
@one_line_errors
def catch_up_command(since):
    """Pull the Contacts and Deals modified in Zoho since the last catch-up and apply them now."""
    rt = runtime()
    if since is not None:
        try:
            since = catchup.as_epoch(since)
        except ValueError as exc:
            raise click.ClickException(f"--since: {exc}") from None
    state = connection.state(rt)
    if state == connection.NEEDS_REAUTHORIZATION:
        raise click.ClickException("the Zoho connection needs a new grant token (the refresh token no longer works): "
                                   "save the Zoho settings again on the admin page or run `configure`")
    if state != connection.CONNECTED:
        raise click.ClickException("Zoho CRM is not connected: save the connection on the admin page or run `configure` first")
    result = catchup.catch_up(rt, since=since)
    click.echo(catchup.summary(result))
    if result.problems:
        raise click.ClickException("; ".join(result.problems))
