"""The command line (`flask --app wsgi <command>`): every command, registered explicitly."""
from __future__ import annotations

from . import inbound, ops, outbound, setup, zoho

COMMANDS = (
    setup.init_db_command, setup.rotate_keys_command, setup.set_admin_password_command, setup.dev_bootstrap_command,
    setup.worker_command, zoho.configure_command, ops.init_ops_demo_command, ops.configure_ops_command, inbound.webhook_secret_command,
    inbound.inbox_cli, inbound.catch_up_command, outbound.push_command, outbound.queue_cli,
)


def init_app(app) -> None:
    for command in COMMANDS:
        app.cli.add_command(command)
