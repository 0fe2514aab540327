"""What each admin button does: call the owning service and return a `Result` (the message shown
after the POST, the audit detail), never with a secret: the message travels in the session cookie."""
from __future__ import annotations

import logging

from .. import ops
from ..errors import ConfigError, RequestError, VaultError
from ..inbound import notify, reports, secrets
from ..ops import OpsError
from ..outbound import events, queue
from ..results import Result
from ..sync.modules import BY_TABLE
from ..zoho import connect
from ..zoho.errors import ZohoError

log = logging.getLogger("gateway.admin")

# Errors made for people: their message is shown as it is.
SPOKEN_ERRORS = (RequestError, ConfigError, VaultError, ZohoError, OpsError, queue.UnknownModule)


def _failed(what: str, exc: Exception) -> Result:
    """An unexpected failure: the admin gets a plain sentence, the log gets the traceback."""
    if isinstance(exc, SPOKEN_ERRORS):
        return Result(False, f"Could not {what}: {str(exc) or exc.__class__.__name__}", f"failed: {exc.__class__.__name__}")
    log.exception("admin action failed: %s", what)
    return Result(False, f"Could not {what} ({exc.__class__.__name__}); the log has the details.", f"failed: {exc.__class__.__name__}")


def configure(rt, *, data_center, client_id, client_secret, grant_token, account_id, redirect_uri, modules) -> Result:
    try:
        result = connect.configure(rt, data_center=data_center, client_id=client_id, client_secret=client_secret,
                                   grant_token=grant_token, account_id=account_id, redirect_uri=redirect_uri or None,
                                   modules=tuple(modules))
    except Exception as exc:
        return _failed("save the configuration", exc)
    detail = f"data center {data_center}, account {account_id}, modules {', '.join(modules)}: " + (
        "connected" if result.ok else "refused")
    return Result(result.ok, result.message, detail)


def configure_ops(rt, *, url, client_id, client_secret) -> Result:
    """Connect to OnPrintShop's API: check the client (a token, the statuses) and save it."""
    try:
        return ops.configure_api(rt, url=url, client_id=client_id, client_secret=client_secret)
    except Exception as exc:
        return _failed("connect to OnPrintShop", exc)


def update(rt, *, account_id, modules) -> Result:
    try:
        result = connect.update(rt, account_id=account_id, modules=tuple(modules))
    except Exception as exc:
        return _failed("change the Zoho settings", exc)
    detail = f"account {account_id}, modules {', '.join(modules)}: " + ("changed" if result.ok else "refused")
    return Result(result.ok, result.message, detail)


def save_pending(rt, *, data_center, client_id, client_secret, account_id, redirect_uri, modules) -> Result:
    """Keep the form for the redirect flow; the view then sends the admin to Zoho."""
    try:
        result = connect.save_pending(rt, data_center=data_center, client_id=client_id, client_secret=client_secret,
                                      account_id=account_id, redirect_uri=redirect_uri or None, modules=tuple(modules))
    except Exception as exc:
        return _failed("start connecting through Zoho", exc)
    return Result(result.ok, result.message, f"data center {data_center}, account {account_id}: " + (
        "sent to Zoho" if result.ok else "refused"))


def disconnect(rt) -> Result:
    try:
        result = connect.disconnect(rt)
    except Exception as exc:
        return _failed("disconnect from Zoho", exc)
    return Result(result.ok, result.message, "disconnected" if result.ok else f"refused: {result.message}"[:200])


def retry_job(rt, job_id: int) -> Result:
    try:
        moved = queue.retry_dead(rt, ids=[job_id])
    except Exception as exc:
        return _failed(f"retry job {job_id}", exc)
    if not moved:
        return Result(False, f"Job {job_id} is not a dead job any more (already retried?); nothing changed.", f"job {job_id}: not dead")
    return Result(True, f"Job {job_id} is back in the queue; it will be sent shortly.", f"job {job_id}")


def retry_all(rt) -> Result:
    try:
        moved = queue.retry_dead(rt, ids=None)
    except Exception as exc:
        return _failed("retry the dead jobs", exc)
    if not moved:
        return Result(True, "There were no dead jobs to retry.", "0 jobs")
    return Result(True, f"{moved} dead job{'s' if moved != 1 else ''} back in the queue.", f"{moved} jobs")


def retry_failed_deliveries(rt) -> Result:
    try:
        moved = reports.retry_failed(rt)
    except Exception as exc:
        return _failed("retry the failed deliveries", exc)
    if not moved:
        return Result(True, "There were no failed deliveries to retry.", "0 deliveries")
    return Result(True, f"{moved} failed deliver{'ies' if moved != 1 else 'y'} back in line; they are written to "
                        "OnPrintShop shortly, in order (see Latest deliveries).",
                  f"{moved} {'delivery' if moved == 1 else 'deliveries'}")


def push(rt, kind: str, record_id: int) -> Result:
    """Queue one customer or order for Zoho now (sent even if unchanged), if OnPrintShop has it."""
    module = BY_TABLE[kind]
    noun = module.noun
    try:
        found = rt.ops.existing_ids(kind, [record_id])
    except OpsError as exc:
        log.warning("admin push: %s", exc)
        return Result(False, f"Could not look up {noun} {record_id}: {exc}. Nothing was queued.",
                      f"{noun} {record_id}: {rt.ops.describe()} unavailable")
    except Exception as exc:
        return _failed(f"look up {noun} {record_id}", exc)
    if record_id not in found:
        return Result(False, f"OnPrintShop has no {noun} with id {record_id}; nothing was queued.", f"{noun} {record_id}: not found")
    try:
        queue.enqueue(rt, module.zoho, [record_id], force=True)
    except Exception as exc:
        return _failed(f"push {noun} {record_id}", exc)
    return Result(True, f"{noun.capitalize()} {record_id} is queued for Zoho; it will be sent shortly.", f"{noun} {record_id}")


def rotate_webhook_secret(rt) -> Result:
    try:
        secrets.rotate_webhook_secret(rt)
    except Exception as exc:
        return _failed("rotate the webhook secret", exc)
    return Result(True, "New webhook secret made. The previous one keeps working for 24 hours: put the new one into "
                        "Zoho's webhooks (header X-Webhook-Token) before then.", "webhook secret rotated")


def rotate_events_secret(rt) -> Result:
    try:
        events.rotate_events_secret(rt)
    except Exception as exc:
        return _failed("rotate the events secret", exc)
    return Result(True, "New events secret made. The previous one keeps working for 24 hours: give the new one to "
                        "OnPrintShop's event sender before then.", "events secret rotated")


def revoke_previous_secrets(rt, which: str) -> Result:
    """End the grace of the replaced webhook or events secrets now (a leaked secret stops working)."""
    name, revoke = {"webhook": ("webhook", secrets.revoke_previous_webhook_secrets),
                    "events": ("events", events.revoke_previous_events_secrets)}[which]
    try:
        ended = revoke(rt)
    except Exception as exc:
        return _failed(f"end the old {name} secrets' grace", exc)
    if not ended:
        return Result(True, f"No previous {name} secret was still valid; nothing changed.", f"{name}: none in grace")
    return Result(True, f"The grace of {ended} previous {name} secret{'s' if ended != 1 else ''} ended now: "
                        f"only the current {name} secret is accepted.", f"{name}: {ended} ended")


def set_notify(rt, on: bool, request_root: str | None = None) -> Result:
    try:
        result = notify.set_enabled(rt, on, request_root=request_root)
    except Exception as exc:
        return _failed(f"switch the Notification API {'on' if on else 'off'}", exc)
    return Result(result.ok, result.message, f"notification API {'on' if on else 'off'}: " + ("done" if result.ok else "refused"))
