"""Notification API callbacks: the announced record ids are stored first (`gw_notify_pending`),
then fetched from Zoho and applied through the inbox; ids Zoho cannot serve now wait for the
upkeep loop (docs/inbound.md, "Notification API")."""
from __future__ import annotations

import hmac
import logging
import re
import time
from collections import Counter

import sqlalchemy as sa

from ..errors import RequestError
from ..state.tables import notify_pending_table as pending_table
from ..sync.modules import NAMES as MODULES
from ..zoho import gate as zoho_gate
from ..zoho.errors import ZohoError
from . import catchup

log = logging.getLogger("gateway.inbound.notify")

CHANNEL_SETTING = "notify.channel"  # channel_id, notify_url, events, expires_at, subscribed_at, renewed_at, last_error
ENABLED_SETTING = "notify.enabled"
TOKEN_SECRET = "notify.channel_token"
MAX_BODY = 64 * 1024
MAX_IDS = 1000
ZOHO_ID = re.compile(r"[0-9]{1,30}")
BACKOFF_MAX_SECONDS = 900
FETCH_TIMEOUT = 10  # a callback waits for Zoho this long before keeping the ids for later


def pending_count(rt) -> int:
    with rt.store.engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(pending_table)).scalar_one()


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


# -- a callback ---------------------------------------------------------------------------------
def check_channel(rt, body: dict) -> None:
    """RequestError 401 unless channel_id and token are the current channel's (constant time)."""
    channel = rt.store.get_setting(CHANNEL_SETTING) or {}
    with rt.store.begin() as conn:
        expected_token = rt.vault.get(conn, TOKEN_SECRET) if channel else None
    enabled = bool(rt.store.get_setting(ENABLED_SETTING, False))
    given_channel = str(body.get("channel_id") if body.get("channel_id") is not None else "")
    given_token = body.get("token") if isinstance(body.get("token"), str) else ""
    channel_ok = hmac.compare_digest(_utf8(given_channel), _utf8(str(channel.get("channel_id") or "\0")))
    token_ok = hmac.compare_digest(_utf8(given_token), _utf8(expected_token or "\0"))
    if not (enabled and expected_token and channel_ok and token_ok):
        raise RequestError("wrong or missing token or channel_id", status=401)


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")  # JSON may carry lone surrogates ("\\ud800")


def ids_of(body: dict) -> tuple[str, list[str]]:
    """(module, ids) of a callback; RequestError 422 naming what is wrong."""
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
    gate = zoho_gate.for_runtime(rt)
    return gate.in_use() >= gate.concurrency


def handle_callback(rt, body: dict) -> tuple[dict, int]:
    """Verify a callback, remember its ids, fetch and apply the records: (answer, HTTP status)."""
    check_channel(rt, body)
    module, ids = ids_of(body)
    if str(body.get("operation", "")).lower() == "delete":
        return {"status": "ignored", "reason": "deletions are not synced"}, 200
    _remember(rt, module, ids, time.time())
    if _zoho_slots_full(rt):
        # Every Zoho call slot is busy (a push burst): waiting for one could outlast Zoho's
        # patience with the callback, so the upkeep loop fetches these shortly.
        return {"status": "accepted", "count": len(ids)}, 202
    try:
        result = process(rt, module, ids)
    except ZohoError as exc:
        _postpone(rt, module, ids, str(exc) or type(exc).__name__, time.time())
        log.warning("notification for %d %s kept until Zoho answers: %s", len(ids), module, exc)
        return {"status": "accepted", "count": len(ids)}, 202
    return {"status": "processed", "count": len(ids), "outcomes": dict(result)}, 200
