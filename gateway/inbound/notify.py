"""Notification API mode: the gateway's Zoho channel and the callback Zoho posts to it.

Owns the switch (`enabled`, `set_enabled`, `channel_status`), the channel's life (subscribed
with `POST /crm/v8/actions/watch` for `Contacts.edit` and `Deals.edit`, expiring six days
ahead, renewed a day before it lapses by `run_renewal`, unsubscribed when switched off) and
`POST /webhooks/zoho/notify`.

A callback carries only record ids. They are written to `gw_notify_pending` before anything
else, then fetched from Zoho with the shared token and applied through the inbox
(source "notify"); a row leaves the table only once its record was applied (or found gone).
When Zoho cannot be reached (or every Zoho call slot is busy, so the fetch would keep Zoho's
callback waiting) the callback is still answered 202: the ids wait in the table and the upkeep
loop fetches them later, with backoff, so nothing Zoho announced is lost.

The channel token is a secret (in the vault); channel id, URL and expiry are plain settings.
"""
from __future__ import annotations

import hmac
import json
import logging
import re
import secrets as pysecrets
import time
from collections import Counter
from datetime import datetime, timezone

import sqlalchemy as sa
from flask import Blueprint, current_app, has_request_context, jsonify, request

from ..errors import RequestError
from ..security import csrf, limiter, refused
from ..store import metadata, new_holder_id
from ..zoho.connection import Result  # the admin-facing outcome shared with the Zoho form

log = logging.getLogger("gateway.inbound.notify")

bp = Blueprint("notify", __name__, url_prefix="/webhooks")
csrf.exempt(bp)  # Zoho posts here; the channel token is the check

ENABLED_SETTING = "notify.enabled"
CHANNEL_SETTING = "notify.channel"   # channel_id, notify_url, events, expires_at, subscribed_at, renewed_at, last_error
TOKEN_SECRET = "notify.channel_token"
EVENTS = ("Contacts.edit", "Deals.edit")
MODULES = ("Contacts", "Deals")
CALLBACK_PATH = "/webhooks/zoho/notify"
CHANNEL_SECONDS = 6 * 86400
RENEW_BEFORE_SECONDS = 86400     # renew once less than a day is left
RETRY_SECONDS = 300              # a failed renewal is tried again after this
LOOP_SECONDS = 30
LEASE = "notify.renewal"
MAX_BODY = 64 * 1024
MAX_IDS = 1000
ZOHO_ID = re.compile(r"[0-9]{1,30}")
BACKOFF_MAX_SECONDS = 900
FETCH_TIMEOUT = 10  # a callback waits for Zoho this long before keeping the ids for later

pending_table = sa.Table(
    "gw_notify_pending",
    metadata,
    sa.Column("module", sa.String(16), primary_key=True),
    sa.Column("zoho_id", sa.String(32), primary_key=True),
    sa.Column("received_at", sa.Double, nullable=False),   # latest callback for this record
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("next_try_at", sa.Double, nullable=False),
    sa.Column("last_error", sa.Text, nullable=True),
)


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
    status["pending"] = pending_count(rt)
    return status


def pending_count(rt) -> int:
    with rt.store.engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(pending_table)).scalar_one()


def notify_url(rt, base_url: str | None = None) -> str | None:
    """Where Zoho posts: GATEWAY_PUBLIC_URL, else the given base, else the stored channel's, else this request's."""
    base = rt.config.get("GATEWAY_PUBLIC_URL") or base_url
    if not base:
        stored = (rt.store.get_setting(CHANNEL_SETTING) or {}).get("notify_url")
        if stored:
            return stored
        if has_request_context():
            base = request.url_root
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
    from ..zoho.errors import ZohoError

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
    try:
        from ..zoho import connection

        return connection.state(rt) == "connected"
    except ImportError:
        return False


def set_enabled(rt, on: bool, base_url: str | None = None, now: float | None = None) -> Result:
    """Switch Notification API mode on (subscribe a channel now) or off (unsubscribe, best effort)."""
    now = time.time() if now is None else now
    if not on:
        return _switch_off(rt)
    if not _connected(rt):
        return Result(False, "Connect Zoho CRM first: the channel is subscribed with the gateway's Zoho connection.")
    url = notify_url(rt, base_url)
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
    from ..zoho.errors import ZohoError

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
    holder = new_holder_id()
    while not stop.is_set():
        try:
            # Nothing to keep alive and nothing waiting: no lease write every round.
            if (enabled(rt) or pending_count(rt)) and rt.store.try_lease(LEASE, holder, LOOP_SECONDS * 4):
                renew_if_due(rt)
                if _connected(rt):
                    drain_pending(rt)
        except Exception:  # a database or Zoho hiccup: the next round tries again
            log.exception("Notification API upkeep failed; trying again shortly")
        stop.wait(LOOP_SECONDS)


# -- pending ids ----------------------------------------------------------------------------------
def _remember(rt, module: str, ids: list[str], now: float) -> None:
    """Write the announced ids durably (one row per record, touched again by a later callback)."""
    with rt.store.immediate() as conn:
        existing = set(conn.execute(
            sa.select(pending_table.c.zoho_id).where(pending_table.c.module == module, pending_table.c.zoho_id.in_(ids))
        ).scalars())
        for zoho_id in ids:
            if zoho_id in existing:
                conn.execute(pending_table.update().where(pending_table.c.module == module, pending_table.c.zoho_id == zoho_id)
                             .values(received_at=now, next_try_at=now))
            else:
                conn.execute(pending_table.insert().values(module=module, zoho_id=zoho_id, received_at=now, attempts=0,
                                                           next_try_at=now, last_error=None))


def _forget(rt, module: str, ids, fetched_at: float) -> None:
    """Drop the rows served by a fetch; a row touched by a newer callback since then stays."""
    with rt.store.begin() as conn:
        conn.execute(pending_table.delete().where(
            pending_table.c.module == module, pending_table.c.zoho_id.in_(list(ids)),
            pending_table.c.received_at <= fetched_at,
        ))


def _postpone(rt, module: str, ids, error: str, now: float) -> None:
    with rt.store.begin() as conn:
        rows = conn.execute(sa.select(pending_table.c.zoho_id, pending_table.c.attempts).where(
            pending_table.c.module == module, pending_table.c.zoho_id.in_(list(ids)))).all()
        for zoho_id, attempts in rows:
            delay = min(BACKOFF_MAX_SECONDS, 15 * 2 ** min(attempts, 10))
            conn.execute(pending_table.update().where(pending_table.c.module == module, pending_table.c.zoho_id == zoho_id)
                         .values(attempts=attempts + 1, next_try_at=now + delay, last_error=error[:500]))


def process(rt, module: str, ids, source: str = "notify") -> Counter:
    """Fetch these records from Zoho and apply them; raises ZohoError (ids kept) when Zoho fails."""
    from . import catchup

    fetched_at = time.time()
    records = catchup.fetch_records(rt, module, ids, timeout=FETCH_TIMEOUT)
    result = catchup.apply_records(rt, module, records, source)
    found = {str(r["id"]) for r in records}
    result["not_found"] += len(set(ids) - found)
    if not result["not_found"]:
        del result["not_found"]
    _forget(rt, module, ids, fetched_at)
    return result


def drain_pending(rt, now: float | None = None, limit: int = 500) -> Counter:
    """Fetch and apply the ids whose callback could not be served when it came."""
    from ..zoho.errors import ZohoError

    now = time.time() if now is None else now
    with rt.store.engine.connect() as conn:
        rows = conn.execute(
            sa.select(pending_table.c.module, pending_table.c.zoho_id)
            .where(pending_table.c.next_try_at <= now).order_by(pending_table.c.received_at).limit(limit)
        ).all()
    result: Counter = Counter()
    by_module: dict[str, list[str]] = {}
    for module, zoho_id in rows:
        by_module.setdefault(module, []).append(zoho_id)
    for module, ids in by_module.items():
        try:
            result.update(process(rt, module, ids))
        except ZohoError as exc:
            _postpone(rt, module, ids, str(exc) or type(exc).__name__, now)
            log.warning("%d %s notifications wait for Zoho: %s", len(ids), module, exc)
            result["waiting"] += len(ids)
    return result


# -- the callback ---------------------------------------------------------------------------------
def _rate_limit() -> str:
    return current_app.config["GATEWAY_WEBHOOK_RATE_LIMIT"]


def _read_bounded(stream, limit: int) -> bytes:
    """Up to `limit` bytes; a stream may return less than asked per read, so read until EOF or the limit."""
    chunks, size = [], 0
    while size < limit:
        chunk = stream.read(limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _read_callback() -> dict:
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise RequestError("request body too large (at most 64 KiB)", status=413)
    if request.mimetype not in ("application/json", "text/plain"):
        raise RequestError("send the notification as application/json", status=415)
    raw = _read_bounded(request.stream, MAX_BODY + 1)  # a chunked body has no length: read one byte past
    if len(raw) > MAX_BODY:
        raise RequestError("request body too large (at most 64 KiB)", status=413)
    try:
        body = json.loads(raw or b"null")
    except (ValueError, RecursionError):  # RecursionError: absurdly deep nesting
        raise RequestError("the body is not valid JSON", status=400) from None
    if not isinstance(body, dict):
        raise RequestError("the body must be a JSON object", status=400)
    return body


def _check_channel(rt, body: dict) -> None:
    """401 unless channel_id and token are the current channel's (compared in constant time)."""
    channel = rt.store.get_setting(CHANNEL_SETTING) or {}
    with rt.store.begin() as conn:
        expected_token = rt.vault.get(conn, TOKEN_SECRET) if channel else None
    given_channel = str(body.get("channel_id") if body.get("channel_id") is not None else "")
    given_token = body.get("token") if isinstance(body.get("token"), str) else ""
    channel_ok = hmac.compare_digest(_utf8(given_channel), _utf8(str(channel.get("channel_id") or "\0")))
    token_ok = hmac.compare_digest(_utf8(given_token), _utf8(expected_token or "\0"))
    if not (enabled(rt) and expected_token and channel_ok and token_ok):
        raise RequestError("wrong or missing token or channel_id", status=401)


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")  # JSON may carry lone surrogates ("\\ud800")


def _ids(body: dict) -> tuple[str, list[str]]:
    module = body.get("module")
    if module not in MODULES:
        raise RequestError("module must be Contacts or Deals", status=422, parameter="module")
    ids = body.get("ids")
    if not isinstance(ids, list) or not ids or len(ids) > MAX_IDS:
        raise RequestError(f"ids must be a list of 1 to {MAX_IDS} record ids", status=422, parameter="ids")
    clean = []
    for value in ids:
        text = str(value) if isinstance(value, (str, int)) and not isinstance(value, bool) else ""
        if not ZOHO_ID.fullmatch(text):
            raise RequestError("every id must be a Zoho record id (digits)", status=422, parameter="ids")
        clean.append(text)
    return module, list(dict.fromkeys(clean))


def _zoho_slots_full(rt) -> bool:
    try:
        from ..zoho import gate as zoho_gate

        gate = zoho_gate.for_runtime(rt)
        return gate.in_use() >= len(gate.slots)
    except (ImportError, AttributeError):
        return False


@bp.route("/zoho/notify", methods=["POST"])
# Only refused callbacks count (webhooks.refused): Zoho's own, however many, never fill the limit.
@limiter.limit(_rate_limit, deduct_when=refused)
def zoho_notify():
    """Zoho's Notification API callback: verify, remember the ids, fetch and apply the records."""
    from ..runtime import current
    from ..zoho.errors import ZohoError

    rt = current()
    body = _read_callback()
    _check_channel(rt, body)
    module, ids = _ids(body)
    if str(body.get("operation", "")).lower() == "delete":
        return jsonify({"status": "ignored", "reason": "deletions are not synced"}), 200
    _remember(rt, module, ids, time.time())
    if _zoho_slots_full(rt):
        # Every Zoho call slot of the deployment is busy (a push burst): waiting for one could
        # outlast Zoho's patience with the callback, so the upkeep loop fetches these shortly.
        return jsonify({"status": "accepted", "count": len(ids)}), 202
    try:
        result = process(rt, module, ids)
    except ZohoError as exc:
        _postpone(rt, module, ids, str(exc) or type(exc).__name__, time.time())
        log.warning("notification for %d %s kept until Zoho answers: %s", len(ids), module, exc)
        return jsonify({"status": "accepted", "count": len(ids)}), 202
    return jsonify({"status": "processed", "count": len(ids), "outcomes": dict(result)}), 200
