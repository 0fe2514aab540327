"""Catch-up: pulling the Contacts and Deals modified in Zoho and applying them through the inbox;
also a Zoho record as webhook parameters, and reading records by id for the Notification API
(docs/inbound.md, "Catch-up")."""
from __future__ import annotations

import logging
import time
from collections import Counter
from datetime import datetime, timezone

from ..errors import RequestError
from ..state.leases import leased_loop
from ..sync.modules import synced
from ..zoho import connection
from ..zoho.errors import ZohoError
from . import inbox, parse

log = logging.getLogger("gateway.inbound.catchup")

WATERMARK_SETTING = "catchup.watermark"   # {module: epoch seconds}
LAST_PASS_SETTING = "catchup.last_pass"   # {at, counts, problems}
LEASE = "catchup.runner"
INTERVAL_SECONDS = 15 * 60
FIRST_LOOKBACK_SECONDS = 24 * 3600  # with no watermark yet, look back one day
OVERLAP_SECONDS = 120  # re-read a little: Zoho's times are to the second and its listing may lag a write
PER_PAGE = 200
IDS_PER_CALL = 100  # Zoho's limit for `ids=`
MAX_PAGES = 1000  # 200,000 records: a bound against a listing that never ends

# Zoho API field -> webhook parameter, for the fields every installation has.
STANDARD_FIELDS = {
    "Contacts": {"Email": "email", "First_Name": "first_name", "Last_Name": "last_name", "Phone": "phone",
                 "Modified_Time": "modified_time"},
    "Deals": {"Stage": "stage", "Modified_Time": "modified_time"},
}
# Empty in Zoho means "clear it" for these parameters; for the others it means "not known", and
# the parameter is left out rather than sent empty (which would be refused for a required column).
CLEARABLE = {"phone"}


class CatchUpResult(Counter):
    """Counts by outcome (applied, duplicate, stale, accepted, not_found, conflict, invalid),
    plus `problems`: one line per module whose pass failed (its watermark did not move)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.problems: list[str] = []


# -- mapping Zoho records to webhook parameters -------------------------------------------------------
# The mapping's optional custom fields (gateway.ops.mapping ZOHO_FIELD_KEYS) and their parameters.
CUSTOM_FIELDS = {
    "Contacts": {"contact_ops_id_field": "ops_id"},
    "Deals": {"deal_ops_id_field": "ops_id", "deal_payment_status_field": "payment_status"},
}


def zoho_fields(module: str, mapping) -> dict[str, str]:
    """Every Zoho API field we read for a module -> the webhook parameter it becomes."""
    fields = dict(STANDARD_FIELDS[module])
    for key, param in CUSTOM_FIELDS[module].items():
        api_name = mapping.zoho_field(key)
        if api_name:
            fields[api_name] = param
    return fields


def params_from_record(module: str, record: dict, mapping) -> dict:
    """A Zoho record as the webhook parameters a webhook would have sent for it."""
    params = {"id": str(record["id"])}
    for api_name, param in zoho_fields(module, mapping).items():
        if api_name not in record:
            continue
        value = record[api_name]
        if isinstance(value, dict):  # a lookup field: {"id": …, "name": …}
            value = value.get("id")
        if value is None or value == "":
            if param in CLEARABLE:
                params[param] = ""
            continue
        params[param] = str(value)
    return params


# -- reading records ------------------------------------------------------------------------------
def _data(response) -> list[dict]:
    """The records of a read; 204, 304 (a listing with `If-Modified-Since` when nothing changed
    since) and Zoho's 'no such record' answers mean none."""
    if response.status_code in (204, 304):
        return []
    try:
        body = response.json()
    except ValueError:
        raise ZohoError(f"Zoho answered HTTP {response.status_code} without JSON") from None
    if response.status_code >= 400:
        code = body.get("code") if isinstance(body, dict) else None
        if code in ("INVALID_DATA", "NO_CONTENT", "RECORD_NOT_FOUND"):
            return []
        raise ZohoError(f"Zoho answered HTTP {response.status_code} {code or ''}: {body.get('message', '') if isinstance(body, dict) else ''}".strip())
    data = body.get("data") if isinstance(body, dict) else None
    return [r for r in data or [] if isinstance(r, dict) and r.get("id")]


def fetch_records(rt, module: str, ids, timeout: float = 30) -> list[dict]:
    """The current state of these records in Zoho (those that exist), 100 ids a call."""
    mapping = rt.ops.mapping
    fields = ",".join(zoho_fields(module, mapping))
    ids = [str(i) for i in dict.fromkeys(ids)]
    records = []
    for start in range(0, len(ids), IDS_PER_CALL):
        chunk = ids[start:start + IDS_PER_CALL]
        response = rt.zoho.request("GET", f"/crm/v8/{module}", params={"ids": ",".join(chunk), "fields": fields},
                                   timeout=timeout)
        records.extend(_data(response))
    return records


# -- applying -------------------------------------------------------------------------------------
def apply_record(rt, module: str, record: dict, source: str) -> str:
    """Apply one Zoho record through the inbox; returns the outcome (or 'invalid')."""
    params = params_from_record(module, record, rt.ops.mapping)
    try:
        deals = module == "Deals"
        update = parse.validate(module, params, rt.ops.mapping, rt.config["GATEWAY_ZOHO_TIMEZONE"],
                                statuses=rt.ops.status_names() if deals else None,
                                refresh_statuses=(lambda: rt.ops.status_names(refresh=True)) if deals else None)
    except RequestError as exc:
        # A value OnPrintShop cannot take (unknown stage, too long, …): say which record and why.
        log.warning("%s %s from Zoho not applied (%s): %s%s", module, params["id"], source, exc.message,
                    f" [{exc.parameter}]" if exc.parameter else "")
        return "invalid"
    return inbox.receive(rt, module, update, source=source).status


def apply_records(rt, module: str, records, source: str, result: Counter | None = None) -> Counter:
    result = Counter() if result is None else result
    for record in records:
        result[apply_record(rt, module, record, source)] += 1
    return result


# -- catch-up -------------------------------------------------------------------------------------
def synced_modules(rt) -> tuple[str, ...]:
    """The modules the admin chose to sync (all of ours when the connection does not say)."""
    return tuple(m.zoho for m in synced(connection.modules(rt)))


def if_modified_since(epoch: float) -> str:
    """Zoho's `If-Modified-Since`: ISO 8601 with the offset."""
    return datetime.fromtimestamp(int(epoch), timezone.utc).isoformat()


def _epoch(value) -> float | None:
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()


def list_modified(rt, module: str, since: float):
    """Yield pages of records modified after `since`, newest first (page, then page_token)."""
    fields = ",".join(zoho_fields(module, rt.ops.mapping))
    params = {"fields": fields, "per_page": PER_PAGE, "sort_by": "Modified_Time", "sort_order": "desc", "page": 1}
    headers = {"If-Modified-Since": if_modified_since(since)}
    for _ in range(MAX_PAGES):
        response = rt.zoho.request("GET", f"/crm/v8/{module}", params=params, headers=headers)
        records = _data(response)
        if not records:
            return
        yield records
        body = response.json()
        info = (body.get("info") if isinstance(body, dict) else None) or {}
        if not info.get("more_records"):
            return
        token = info.get("next_page_token")
        params = dict(params)
        if token:  # beyond 2,000 records v8 pages by token only
            params.pop("page", None)
            params["page_token"] = token
        elif "page_token" in params:
            raise ZohoError("Zoho said there are more records but gave no next_page_token")
        else:
            params["page"] += 1
    raise ZohoError(f"{module}: more than {MAX_PAGES} pages modified since {if_modified_since(since)}; give a later --since")


def catch_up(rt, since=None, now: float | None = None) -> CatchUpResult:
    """Pull the Contacts and Deals modified since the watermark (or `since`) and apply them."""
    now = time.time() if now is None else now
    since_epoch = as_epoch(since)
    result = CatchUpResult()
    watermarks = dict(rt.store.get_setting(WATERMARK_SETTING, {}) or {})
    for module in synced_modules(rt):
        start = since_epoch if since_epoch is not None else watermarks.get(module, now - FIRST_LOOKBACK_SECONDS)
        newest = None
        seen: set[str] = set()
        try:
            for page in list_modified(rt, module, start):
                if newest is None:
                    newest = max((_epoch(r.get("Modified_Time")) or 0.0) for r in page) or None
                fresh = [r for r in page if str(r["id"]) not in seen]
                seen.update(str(r["id"]) for r in fresh)
                apply_records(rt, module, fresh, "catchup", result)
        except ZohoError as exc:
            result["failed"] += 1
            result.problems.append(f"{module}: {exc}")
            log.warning("catch-up of %s stopped, watermark kept: %s", module, exc)
            continue
        mark = max(start, newest - OVERLAP_SECONDS) if newest else start
        if mark > watermarks.get(module, float("-inf")):
            watermarks[module] = mark
    rt.store.set_setting(WATERMARK_SETTING, watermarks)
    rt.store.set_setting(LAST_PASS_SETTING, {"at": now, "counts": dict(result), "problems": result.problems})
    return result


def as_epoch(since) -> float | None:
    if since is None:
        return None
    if isinstance(since, (int, float)):
        return float(since)
    if isinstance(since, datetime):
        return (since if since.tzinfo else since.replace(tzinfo=timezone.utc)).timestamp()
    value = _epoch(since)
    if value is None:
        raise ValueError(f"not an ISO 8601 time: {since!r} (e.g. 2026-11-27T08:00:00+00:00)")
    return value


def last_pass(rt) -> dict | None:
    """What the last catch-up pass did (for the admin page): at, counts, problems."""
    return rt.store.get_setting(LAST_PASS_SETTING)


def summary(result: Counter) -> str:
    """`applied 3, duplicate 1, stale 0, not found 2` and any other outcome that occurred."""
    parts = [f"applied {result['applied']}", f"duplicate {result['duplicate']}", f"stale {result['stale']}",
             f"not found {result['not_found']}"]
    for key in ("accepted", "conflict", "invalid", "failed"):
        if result[key]:
            label = {"accepted": "accepted (applied when OnPrintShop is back)", "failed": "modules failed"}.get(key, key)
            parts.append(f"{label} {result[key]}")
    return ", ".join(parts)


# -- background -----------------------------------------------------------------------------------
def connected(rt) -> bool:
    return connection.state(rt) == connection.CONNECTED


def due(rt, now: float) -> bool:
    last = last_pass(rt) or {}
    return now - float(last.get("at") or 0) >= INTERVAL_SECONDS


def run(rt, stop) -> None:
    """Every 15 minutes, one catch-up pass for the whole deployment (whoever holds the lease)."""
    def work():
        if due(rt, time.time()):  # another process may have run it just before we got the lease
            log.info("catch-up: %s", summary(catch_up(rt)))

    leased_loop(rt.store, stop, LEASE, work, every=60, lease_seconds=INTERVAL_SECONDS,
                wanted=lambda: connected(rt) and due(rt, time.time()), log=log, what="catch-up pass")
