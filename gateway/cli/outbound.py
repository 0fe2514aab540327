"""Outbound commands: `push` (or `--dry-run`: the exact Zoho request bodies), `queue status`,
`queue retry-dead`."""
from __future__ import annotations

import datetime as dt
import json

import click
from flask.cli import AppGroup, with_appcontext

from ..outbound import push, queue
from ..sync.modules import BY_TABLE
from ..zoho import connection
from .common import echo_status, one_line_errors, runtime


def parse_since(text: str, ops) -> dt.datetime:
    """ISO 8601 → a naive OnPrintShop datetime (with an offset: converted; without: read in OPS_TIMEZONE)."""
    try:
        when = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{text!r} is not an ISO 8601 date or time (e.g. 2026-11-27T09:00:00+00:00)",
                                 param_hint="--since") from None
    return ops.to_local(when) if when.tzinfo else when


def select_ids(rt, what: str, ids, all_, since) -> list[int]:
    chosen = sum(bool(x) for x in (ids, all_, since))
    if chosen != 1:
        raise click.UsageError("give exactly one of --id N (repeatable), --all or --since ISO8601")
    table = what
    if ids:
        found = set(rt.ops.existing_ids(table, ids))
        missing = sorted(set(ids) - found)
        if missing:
            raise click.ClickException(
                f"no {what} with id {', '.join(map(str, missing))} in {rt.ops.describe()}; nothing was queued")
        return sorted(found)
    if all_:
        return rt.ops.all_ids(table, patient=True)
    return rt.ops.all_ids(table, since=parse_since(since, rt.ops), patient=True)


def _dry_run(rt, module: str, ids: list[int], force: bool) -> None:
    account = connection.account_id(rt)
    synced = connection.modules(rt)
    contacts_synced = not synced or "contacts" in synced
    calls = 0
    if synced and module.lower() not in synced:
        # The worker completes such jobs without a call: so would a real run.
        click.echo(f"{module} are not synced (Zoho settings): a real run sends none of them")
        click.echo("dry run: 0 call(s) would be made; nothing was sent or queued")
        return
    if module == "Deals" and ids:
        # A real run queues these customers too, and the worker sends their Contacts before the
        # Deals: show that call as well, or the dry run hides half of what would be sent.
        customers = set(rt.ops.customer_ids_of_orders(ids).values())
        unlinked = sorted(customers - set(push.linked_ids(rt.store, "Contacts", customers)))
        if unlinked and contacts_synced:
            click.echo(f"customers whose Contact is not in Zoho yet, pushed before these Deals: {len(unlinked)} "
                       f"({', '.join(map(str, unlinked[:20]))}{' …' if len(unlinked) > 20 else ''})")
            calls += _print_calls(rt, "Contacts", unlinked, account, force=False, contacts_synced=True)[0]
    sent, unchanged, _missing = _print_calls(rt, module, ids, account, force, contacts_synced)
    calls += sent
    if unchanged:
        click.echo(f"unchanged since the last push, not sent (use --force): {len(unchanged)} "
                   f"({', '.join(map(str, unchanged[:20]))}{' …' if len(unchanged) > 20 else ''})")
    if account is None:
        click.echo("Zoho is not connected yet: Account_Name shows as null until the Zoho settings are saved")
    click.echo(f"dry run: {calls} call(s) would be made; nothing was sent or queued")


def _print_calls(rt, module: str, ids: list[int], account, force, contacts_synced: bool) -> tuple[int, list, list]:
    """Print each upsert a push of `ids` would make; returns (calls, unchanged ids, missing ids)."""
    calls, unchanged, missing = 0, [], []
    for start in range(0, len(ids), push.BATCH_SIZE):
        prepared = push.prepare(rt, module, ids[start:start + push.BATCH_SIZE], account_id=account, force=force,
                                dry_run=True, contacts_synced=contacts_synced)
        unchanged += prepared.unchanged
        missing += prepared.missing
        if prepared.send:
            calls += 1
            click.echo(f"POST {push.upsert_path(module)} ({len(prepared.send)} records)")
            click.echo(json.dumps(push.upsert_body(module, [o.record for o in prepared.send]), indent=2, ensure_ascii=False))
    return calls, unchanged, missing


@click.command("push")
@click.argument("what", type=click.Choice(["customers", "orders"]))
@click.option("--id", "ids", type=click.IntRange(min=1), multiple=True, help="an OnPrintShop id (repeatable)")
@click.option("--all", "all_", is_flag=True, help="every record")
@click.option("--since", help="records modified at or after this ISO 8601 time")
@click.option("--force", is_flag=True, help="send even records unchanged since their last push")
@click.option("--dry-run", is_flag=True, help="print the Zoho request bodies; send and queue nothing")
@with_appcontext
@one_line_errors
def push_command(what, ids, all_, since, force, dry_run):
    """Queue OnPrintShop customers or orders for pushing to Zoho."""
    rt = runtime()
    module = BY_TABLE[what].zoho
    selected = select_ids(rt, what, list(ids), all_, since)
    if dry_run:
        _dry_run(rt, module, selected, force)
        return
    if not selected:
        click.echo(f"no {what} matched; nothing queued")
        return
    queued, customers = push.enqueue_records(rt, module, selected, force=force)
    message = f"queued {_count(queued, what)}"
    if customers:
        message += f" and {_count(customers, 'customers')} whose Contact is not in Zoho yet"
    click.echo(message + (" (sent even if unchanged)" if force else ""))


def _count(n: int, plural: str) -> str:
    return f"{n} {plural if n != 1 else plural[:-1]}"


queue_cli = AppGroup("queue", help="The push queue: status and dead jobs.")


@queue_cli.command("status")
@click.option("--json", "as_json", is_flag=True, help="one JSON object")
@one_line_errors
def queue_status_command(as_json):
    """Counts of jobs by state, pause, oldest pending age, last error."""
    figures = queue.status(runtime())
    echo_status(figures, as_json, ("pending", "in_flight", "done", "dead"),
                [f"paused: {'yes: ' + figures['paused_reason'] if figures['paused'] else 'no'}"])


@queue_cli.command("retry-dead")
@click.option("--id", "ids", type=click.IntRange(min=1), multiple=True, help="a dead job's id (repeatable)")
@click.option("--all", "all_", is_flag=True, help="every dead job")
@one_line_errors
def queue_retry_dead_command(ids, all_):
    """Move dead jobs back to pending."""
    if bool(ids) == bool(all_):
        raise click.UsageError("give --id N (repeatable) or --all")
    moved = queue.retry_dead(runtime(), None if all_ else list(ids))
    if ids and moved < len(set(ids)):
        click.echo(f"moved {moved} dead jobs back to pending ({len(set(ids)) - moved} of the ids given are not dead jobs)")
    else:
        click.echo(f"moved {moved} dead jobs back to pending")
