"""`configure`: the admin page's Zoho save, for shells (the Client Secret only from standard input)."""
from __future__ import annotations

import logging
import sys

import click
from flask.cli import with_appcontext

from ..zoho import connect, connection
from ..zoho.datacenters import DATA_CENTERS
from ..zoho.validation import MODULES
from .common import one_line_errors, runtime


@click.command("configure")
@click.option("--data-center", "data_center", required=True, type=click.Choice(list(DATA_CENTERS)),
              help="the Zoho data center of the CRM organisation")
@click.option("--client-id", "client_id", required=True, help="the Client ID from Zoho's API console")
@click.option("--client-secret-stdin", "secret_from_stdin", is_flag=True,
              help="read the Client Secret from standard input (required unless the same client is stored already)")
@click.option("--grant-token", "grant_token", required=True, help="a grant token (Self Client › Generate Code), used at once")
@click.option("--account-id", "account_id", required=True, help="the id of the Zoho Account record synced records attach to")
@click.option("--redirect-uri", "redirect_uri", default=None, help="the redirect URI of a server-based client")
@click.option("--module", "modules", multiple=True, type=click.Choice(list(MODULES)),
              help="a module to sync (repeat; default: contacts and deals)")
@with_appcontext
@one_line_errors
def configure_command(data_center, client_id, secret_from_stdin, grant_token, account_id, redirect_uri, modules):
    """Connect to Zoho CRM: store the settings encrypted and exchange the grant token now."""
    secret = None
    if secret_from_stdin:
        secret = sys.stdin.readline().strip()
        if not secret:
            raise click.ClickException("client_secret: standard input was empty; pipe the Client Secret in")
    rt = runtime()
    # The outcome is this command's one line of output; the same words as log lines would repeat it.
    zoho_log = logging.getLogger("gateway.zoho")
    level = zoho_log.level
    zoho_log.setLevel(logging.ERROR)
    try:
        result = connect.configure(
            rt, data_center=data_center, client_id=client_id, client_secret=secret, grant_token=grant_token,
            account_id=account_id, redirect_uri=redirect_uri, modules=modules or MODULES,
        )
    finally:
        zoho_log.setLevel(level)
    if not result.ok:
        raise click.ClickException(result.message)
    info = connection.status(rt)
    click.echo(f"connected {info['data_center']} {info['api_domain']}")
