"""What each admin button does, in words: call the owning concern, say what happened.

Every function returns an `Outcome`: whether it worked, the message shown to the admin after
the POST, and the detail written to the audit log. Neither ever carries a secret (the flash
message travels in the signed but readable session cookie). The functions of the other
concerns are the agreed ones: `gateway.zoho.connection`, `gateway.outbound.queue`,
`gateway.outbound.events`, `gateway.inbound.secrets`, `gateway.inbound.notify`.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

log = logging.getLogger("gateway.admin")

# The queue's module names for what the admin calls customers and orders.
PUSH_MODULES = {"customers": "Contacts", "orders": "Deals"}


@dataclass(frozen=True)
class Outcome:
    ok: bool
    message: str
    detail: str


def _failed(what: str, exc: Exception) -> Outcome:
    """An unexpected failure: the admin gets a plain sentence, the log gets the traceback."""
    # Errors made for people (ours and Zoho's) carry a message worth showing as it is.
    if exc.__class__.__name__ in {"RequestError", "ConfigError", "VaultError"} or exc.__class__.__module__.startswith(
        ("gateway.zoho.errors", "gateway.outbound", "gateway.inbound")
    ):
        text = str(exc) or exc.__class__.__name__
        return Outcome(False, f"Could not {what}: {text}", f"failed: {exc.__class__.__name__}")
    log.exception("admin action failed: %s", what)
    return Outcome(False, f"Could not {what} ({exc.__class__.__name__}); the log has the details.", f"failed: {exc.__class__.__name__}")


def configure(rt, *, data_center, client_id, client_secret, grant_token, account_id, redirect_uri, modules) -> Outcome:
    from ..zoho import connection

    try:
        result = connection.configure(
            rt,
            data_center=data_center,
            client_id=client_id,
            client_secret=client_secret,
            grant_token=grant_token,
            account_id=account_id,
            redirect_uri=redirect_uri or None,
            modules=tuple(modules),
        )
    except Exception as exc:
        return _failed("save the configuration", exc)
    detail = f"data center {data_center}, account {account_id}, modules {', '.join(modules)}: " + (
        "connected" if result.ok else "refused"
    )
    return Outcome(bool(result.ok), result.message, detail)


def update(rt, *, account_id, modules) -> Outcome:
    from ..zoho import connection

    try:
        result = connection.update(rt, account_id=account_id, modules=tuple(modules))
    except Exception as exc:
        return _failed("change the Zoho settings", exc)
    detail = f"account {account_id}, modules {', '.join(modules)}: " + ("changed" if result.ok else "refused")
    return Outcome(bool(result.ok), result.message, detail)


def save_pending(rt, *, connect_available: bool, data_center, client_id, client_secret, account_id, redirect_uri, modules) -> Outcome:
    """Keep the form for the redirect flow; the view then sends the admin to Zoho."""
    from ..zoho import connection

    if not connect_available:
        return Outcome(False, "Connecting through Zoho is not available in this version: paste a grant token instead.", "not available")
    try:
        result = connection.save_pending(
            rt, data_center=data_center, client_id=client_id, client_secret=client_secret,
            account_id=account_id, redirect_uri=redirect_uri or None, modules=tuple(modules),
        )
    except Exception as exc:
        return _failed("start connecting through Zoho", exc)
    return Outcome(bool(result.ok), result.message, f"data center {data_center}, account {account_id}: " + (
        "sent to Zoho" if result.ok else "refused"))


def disconnect(rt) -> Outcome:
    from ..zoho import connection

    try:
        result = connection.disconnect(rt)
    except Exception as exc:
        return _failed("disconnect from Zoho", exc)
    return Outcome(bool(result.ok), result.message, "disconnected" if result.ok else f"refused: {result.message}"[:200])


def retry_job(rt, job_id: int) -> Outcome:
    from ..outbound import queue

    try:
        moved = queue.retry_dead(rt, ids=[job_id])
    except Exception as exc:
        return _failed(f"retry job {job_id}", exc)
    if not moved:
        return Outcome(False, f"Job {job_id} is not a dead job any more (already retried?); nothing changed.", f"job {job_id}: not dead")
    return Outcome(True, f"Job {job_id} is back in the queue; it will be sent shortly.", f"job {job_id}")


def retry_all(rt) -> Outcome:
    from ..outbound import queue

    try:
        moved = queue.retry_dead(rt, ids=None)
    except Exception as exc:
        return _failed("retry the dead jobs", exc)
    if not moved:
        return Outcome(True, "There were no dead jobs to retry.", "0 jobs")
    return Outcome(True, f"{moved} dead job{'s' if moved != 1 else ''} back in the queue.", f"{moved} jobs")


def retry_failed_deliveries(rt) -> Outcome:
    from ..inbound import inbox

    try:
        moved = inbox.retry_failed(rt)
    except Exception as exc:
        return _failed("retry the failed deliveries", exc)
    if not moved:
        return Outcome(True, "There were no failed deliveries to retry.", "0 deliveries")
    return Outcome(True, f"{moved} failed deliver{'ies' if moved != 1 else 'y'} back in line; they are written to "
                         "OnPrintShop shortly, in order (see Latest deliveries).",
                   f"{moved} {'delivery' if moved == 1 else 'deliveries'}")


def push(rt, kind: str, record_id: int) -> Outcome:
    """Queue one customer or order for Zoho now (sent even if unchanged), if OnPrintShop has it."""
    from ..ops import reads
    from ..outbound import queue

    module = PUSH_MODULES[kind]
    noun = "customer" if kind == "customers" else "order"
    try:
        found = reads.existing_ids(rt.ops, kind, [record_id])
    except Exception as exc:
        log.warning("admin push: the OnPrintShop database did not answer (%s)", exc.__class__.__name__)
        return Outcome(False, f"Could not look up {noun} {record_id}: the OnPrintShop database did not answer "
                              f"({exc.__class__.__name__}). Nothing was queued.", f"{noun} {record_id}: database unavailable")
    if record_id not in found:
        return Outcome(False, f"OnPrintShop has no {noun} with id {record_id}; nothing was queued.", f"{noun} {record_id}: not found")
    try:
        queue.enqueue(rt, module, [record_id], force=True)
    except Exception as exc:
        return _failed(f"push {noun} {record_id}", exc)
    return Outcome(True, f"{noun.capitalize()} {record_id} is queued for Zoho; it will be sent shortly.", f"{noun} {record_id}")


def rotate_webhook_secret(rt) -> Outcome:
    from ..inbound import secrets

    try:
        secrets.rotate_webhook_secret(rt)
    except Exception as exc:
        return _failed("rotate the webhook secret", exc)
    return Outcome(
        True,
        "New webhook secret made. The previous one keeps working for 24 hours: put the new one into "
        "Zoho's webhooks (header X-Webhook-Token) before then.",
        "webhook secret rotated",
    )


def rotate_events_secret(rt) -> Outcome:
    from ..outbound import events

    try:
        events.rotate_events_secret(rt)
    except Exception as exc:
        return _failed("rotate the events secret", exc)
    return Outcome(
        True,
        "New events secret made. The previous one keeps working for 24 hours: give the new one to "
        "OnPrintShop's event sender before then.",
        "events secret rotated",
    )


def set_notify(rt, on: bool) -> Outcome:
    from ..inbound import notify

    try:
        result = notify.set_enabled(rt, on)
    except Exception as exc:
        return _failed(f"switch the Notification API {'on' if on else 'off'}", exc)
    return Outcome(bool(result.ok), result.message, f"notification API {'on' if on else 'off'}: " + ("done" if result.ok else "refused"))
