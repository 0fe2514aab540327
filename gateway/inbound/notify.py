"""Notification API mode: the gateway's Zoho channel, switched on and off and renewed before it
lapses; callbacks are `notify_pending`'s (docs/inbound.md, "Notification API")."""
from __future__ import annotations

import logging
import re
import secrets as pysecrets
import time
from datetime import datetime, timezone

from ..results import Result
from ..state.leases import leased_loop
from ..zoho import connection
from ..zoho.errors import ZohoError
from . import notify_pending
from .notify_pending import CHANNEL_SETTING, ENABLED_SETTING, TOKEN_SECRET

log = logging.getLogger("gateway.inbound.notify")

EVENTS = ("Contacts.edit", "Deals.edit")
CALLBACK_PATH = "/webhooks/zoho/notify"
CHANNEL_SECONDS = 6 * 86400
RENEW_BEFORE_SECONDS = 86400     # renew once less than a day is left
RETRY_SECONDS = 300              # a failed renewal is tried again after this
LOOP_SECONDS = 30
LEASE = "notify.renewal"


class SubscriptionError(Exception):
    """Zoho refused or could not take the channel subscription; the message says why."""


# -- state ----------------------------------------------------------------------------------------
def enabled(rt) -> bool:
    return bool(rt.store.get_setting(ENABLED_SETTING, False))


def channel_status(rt) -> dict | None:
    """The channel as the admin page shows it (never its token), or None when there is none."""
    channel = rt.store.get_setting(CHANNEL_SETTING)
    if not channel:
        return None
    status = {k: channel.get(k) for k in ("channel_id", "notify_url", "events", "expires_at", "subscribed_at",
                                          "renewed_at", "last_error", "last_error_at")}
    status["enabled"] = enabled(rt)
    status["expired"] = bool(channel.get("expires_at")) and channel["expires_at"] <= time.time()
    status["pending"] = notify_pending.pending_count(rt)
    return status


def notify_url(rt, base_url: str | None = None, request_root: str | None = None) -> str | None:
    """Where Zoho posts: GATEWAY_PUBLIC_URL or the given base, else the stored channel's, else the request's root."""
    base = rt.config.get("GATEWAY_PUBLIC_URL") or base_url
    if not base:
        stored = (rt.store.get_setting(CHANNEL_SETTING) or {}).get("notify_url")
        if stored:
            return stored
        base = request_root
    if not base:
        return None
    return base.rstrip("/") + CALLBACK_PATH


def expiry_iso(epoch: float) -> str:
    return datetime.fromtimestamp(int(epoch), timezone.utc).isoformat()


def watch_body(channel_id: str, url: str, token: str, expires_at: float) -> dict:
    return {
        "watch": [
            {
                "channel_id": int(channel_id),
                "events": list(EVENTS),
                "notify_url": url,
                "token": token,
                "channel_expiry": expiry_iso(expires_at),
                "return_affected_field_values": True,
            }
        ]
    }


def _zoho_answer(response) -> tuple[bool, str]:
    """(all items succeeded, Zoho's reason when not) for a watch answer."""
    try:
        body = response.json()
    except ValueError:
        return False, f"Zoho answered HTTP {response.status_code} without JSON"
    items = body.get("watch") if isinstance(body, dict) else None
    if response.status_code < 300 and isinstance(items, list) and items and all(
        isinstance(i, dict) and i.get("status") == "success" for i in items
    ):
        return True, ""
    problems = items if isinstance(items, list) else [body]
    for item in problems:
        if isinstance(item, dict) and item.get("status") != "success":
            details = item.get("details") or {}
            where = details.get("api_name") or details.get("param") or ""
            return False, f"{item.get('code', 'error')}: {item.get('message', '')}{f' ({where})' if where else ''}"
    return False, f"Zoho answered HTTP {response.status_code}"


def _subscribe(rt, channel_id: str, url: str, token: str, expires_at: float, renew: bool) -> None:
    """Create (POST) or renew (PUT, then POST if Zoho no longer knows the channel) the channel."""
    body = watch_body(channel_id, url, token, expires_at)
    try:
        if renew:
            ok, reason = _zoho_answer(rt.zoho.request("PUT", "/crm/v8/actions/watch", json=body))
            if ok:
                return
            log.info("renewing channel %s with PUT failed (%s); subscribing it again", channel_id, reason)
        ok, reason = _zoho_answer(rt.zoho.request("POST", "/crm/v8/actions/watch", json=body))
    except ZohoError as exc:
        raise SubscriptionError(str(exc) or type(exc).__name__) from None
    if not ok:
        raise SubscriptionError(reason)


def _connected(rt) -> bool:
    return connection.state(rt) == connection.CONNECTED


def set_enabled(rt, on: bool, base_url: str | None = None, now: float | None = None,
                request_root: str | None = None) -> Result:
    """Switch Notification API mode on (subscribe a channel now) or off (unsubscribe, best effort)."""
    now = time.time() if now is None else now
    if not on:
        return _switch_off(rt)
    if not _connected(rt):
        return Result(False, "Connect Zoho CRM first: the channel is subscribed with the gateway's Zoho connection.")
    url = notify_url(rt, base_url, request_root)
    if not url:
        return Result(False, "Set GATEWAY_PUBLIC_URL (the gateway's public https address) so Zoho knows where to post.")
    if not re.match(r"https?://[^\s/]+", url):
        return Result(False, f"GATEWAY_PUBLIC_URL must be the gateway's public address, like https://gateway.example.com "
                             f"(Zoho would be told to post to {url!r}).")
    channel = rt.store.get_setting(CHANNEL_SETTING) or {}
    with rt.store.begin() as conn:
        token = rt.vault.get(conn, TOKEN_SECRET) if channel else None
    channel_id = str(channel.get("channel_id") or _new_channel_id())
    token = token or pysecrets.token_urlsafe(36)  # 48 characters; Zoho allows 50
    expires_at = now + CHANNEL_SECONDS
    try:
        _subscribe(rt, channel_id, url, token, expires_at, renew=bool(channel))
    except SubscriptionError as exc:
        log.warning("Notification API channel not subscribed: %s", exc)
        return Result(False, f"Zoho did not take the notification channel: {exc}. Notification API mode stays off.")
    with rt.store.immediate() as conn:
        rt.vault.put(conn, TOKEN_SECRET, token)
        rt.store.set_setting(CHANNEL_SETTING, {
            "channel_id": channel_id, "notify_url": url, "events": list(EVENTS), "expires_at": expires_at,
            "subscribed_at": now, "renewed_at": now, "last_error": None, "last_error_at": None,
        }, conn=conn)
        rt.store.set_setting(ENABLED_SETTING, True, conn=conn)
    log.info("Notification API channel %s subscribed until %s, posting to %s", channel_id, expiry_iso(expires_at), url)
    return Result(True, f"Notification API mode is on: Zoho posts changes to {url} (channel {channel_id}, "
                        f"renewed automatically; current expiry {expiry_iso(expires_at)}).")


def _new_channel_id() -> str:
    # A random long that JSON numbers carry exactly everywhere (below 2**53).
    return str(10**15 + pysecrets.randbelow(2**53 - 10**15))


def _switch_off(rt) -> Result:
    channel = rt.store.get_setting(CHANNEL_SETTING) or {}
    with rt.store.immediate() as conn:
        rt.store.set_setting(ENABLED_SETTING, False, conn=conn)
        rt.store.delete_setting(CHANNEL_SETTING, conn)
        rt.vault.delete(conn, TOKEN_SECRET)  # callbacks of the old channel are refused from now on
    if not channel.get("channel_id"):
        return Result(True, "Notification API mode is off.")
    try:
        response = rt.zoho.request("DELETE", "/crm/v8/actions/watch", params={"channel_ids": channel["channel_id"]})
        ok, reason = _zoho_answer(response)
    except ZohoError as exc:
        ok, reason = False, str(exc) or type(exc).__name__
    if ok:
        return Result(True, "Notification API mode is off; the channel was removed in Zoho.")
    log.warning("could not unsubscribe channel %s: %s", channel["channel_id"], reason)
    expires = channel.get("expires_at")
    return Result(True, "Notification API mode is off. Zoho could not be told (" + reason + "); its calls are refused "
                        "and the channel lapses by itself" + (f" on {expiry_iso(expires)}." if expires else "."))


# -- renewal --------------------------------------------------------------------------------------
def renew_if_due(rt, now: float | None = None) -> Result | None:
    """Renew the channel when less than a day is left (or it lapsed); None when nothing was due."""
    now = time.time() if now is None else now
    if not enabled(rt):
        return None
    channel = rt.store.get_setting(CHANNEL_SETTING) or {}
    expires_at = channel.get("expires_at") or 0
    if expires_at - now > RENEW_BEFORE_SECONDS:
        return None
    if channel.get("last_error_at") and now - channel["last_error_at"] < RETRY_SECONDS:
        return None
    with rt.store.begin() as conn:
        token = rt.vault.get(conn, TOKEN_SECRET)
    url = notify_url(rt) or channel.get("notify_url")
    if not (token and channel.get("channel_id") and url):
        return Result(False, "the channel's id, token or URL is missing: switch Notification API mode off and on")
    new_expiry = now + CHANNEL_SECONDS
    try:
        _subscribe(rt, channel["channel_id"], url, token, new_expiry, renew=True)
    except SubscriptionError as exc:
        channel.update(last_error=str(exc), last_error_at=now)
        rt.store.set_setting(CHANNEL_SETTING, channel)
        log.warning("renewing Notification API channel %s failed (expires %s): %s",
                    channel["channel_id"], expiry_iso(expires_at) if expires_at else "?", exc)
        return Result(False, f"renewal failed: {exc}")
    channel.update(expires_at=new_expiry, renewed_at=now, notify_url=url, last_error=None, last_error_at=None)
    rt.store.set_setting(CHANNEL_SETTING, channel)
    log.info("Notification API channel %s renewed until %s", channel["channel_id"], expiry_iso(new_expiry))
    return Result(True, f"renewed until {expiry_iso(new_expiry)}")


def run_renewal(rt, stop) -> None:
    """Background loop: keep the channel alive and fetch notifications Zoho could not serve at once."""
    def work():
        renew_if_due(rt)
        if _connected(rt):
            notify_pending.drain_pending(rt)

    leased_loop(rt.store, stop, LEASE, work, every=LOOP_SECONDS, lease_seconds=LOOP_SECONDS * 4, keep_lease=True,
                wanted=lambda: enabled(rt) or notify_pending.pending_count(rt) > 0, log=log,
                what="Notification API upkeep")
