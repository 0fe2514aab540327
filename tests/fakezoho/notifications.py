"""The fake Zoho's Notification API and record reads: what the sync side (notify, catch-up) talks to.

- `POST/PUT/PATCH/DELETE /crm/v8/actions/watch`: channels, validated as Zoho does (channel_id a
  long, events `Module.operation`, notify_url, token of at most 50 characters, channel_expiry at
  most one week ahead, else (omitted or longer) one hour). Live channels are in `fake.channels`.
- `GET /crm/v8/{Module}/{id}` and `GET /crm/v8/{Module}?ids=a,b`: record reads (204 when none).
- `GET /crm/v8/{Module}` listing: `fields` required (v8), `If-Modified-Since`, `sort_by` /
  `sort_order`, `page` + `per_page` (≤ 200) up to 2,000 records, `page_token` beyond; 304 Not
  Modified (no body) when `If-Modified-Since` is given and no record changed after it, 204 when
  nothing else matches (a page past the end, a listing without `If-Modified-Since` of no records).
- `fake.fire_notification(module, ids, operation="update")` POSTs Zoho's callback body to every
  live channel watching that module's edits and returns the answers; `fake.notify_transport` may
  be replaced (e.g. by a Flask test client's post) when the gateway is not served over HTTP.
- `fake.api_down = True` makes these endpoints answer 503 (Zoho unreachable for the records API).

Every endpoint goes through `fake.check_auth(req)` (the access tokens accounts.py issued).
Records live in the shared `fake.records[module][id]`, each a dict of API field names with
`id` and `Modified_Time` (ISO 8601 with offset); `fake.put_record` stamps them on the fake clock.
"""
from __future__ import annotations

import base64
import json
import re
import uuid
from datetime import datetime, timezone

from .server import Response

MODULES = ("Contacts", "Deals", "Accounts")
OPERATIONS = ("create", "edit", "delete", "all")
MAX_EXPIRY = 7 * 86400
DEFAULT_EXPIRY = 3600
MAX_PER_PAGE = 200
PAGE_LIMIT = 2000  # records reachable with `page`; beyond this Zoho wants `page_token`


def zoho_time(epoch: float) -> str:
    """Zoho's own rendering of a date-time: ISO 8601, seconds, with the offset."""
    return datetime.fromtimestamp(int(epoch), timezone.utc).isoformat()


def parse_time(value: str) -> float | None:
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        return None
    if parsed.tzinfo is None:
        return None
    return parsed.timestamp()


def _error(status: int, code: str, message: str, details: dict | None = None) -> Response:
    return Response(status, {"code": code, "details": details or {}, "message": message, "status": "error"})


def _watch_error(code: str, message: str, details: dict) -> dict:
    return {"code": code, "details": details, "message": message, "status": "error"}


def install(fake) -> None:
    fake.channels = {}  # channel_id (str) -> dict(events, notify_url, token, expires_at, ...)
    fake.api_down = False
    fake.notifications_sent = []  # (url, body, status) of every fired callback
    fake._page_tokens = {}  # token -> (module, query state)

    def _post_json(url: str, body: dict):
        import requests

        answer = requests.post(url, data=json.dumps(body), headers={"Content-Type": "application/json"}, timeout=30)
        return answer.status_code, answer.text

    fake.notify_transport = _post_json

    # -- helpers the tests use --------------------------------------------------------------
    def put_record(module: str, record_id: str, **fields) -> dict:
        """Create or edit a record as a CRM user would: Modified_Time is the fake's now."""
        with fake.lock:
            record = fake.records.setdefault(module, {}).setdefault(str(record_id), {"id": str(record_id)})
            record["Modified_Time"] = zoho_time(fake.now())  # a test may still set its own below
            record.update(fields)
            return dict(record)

    def live_channels(module: str) -> list[dict]:
        now = fake.now()
        with fake.lock:
            return [
                dict(ch, channel_id=cid)
                for cid, ch in fake.channels.items()
                if ch["expires_at"] > now and (f"{module}.edit" in ch["events"] or f"{module}.all" in ch["events"])
            ]

    def fire_notification(module: str, ids, operation: str = "update") -> list[tuple[int, str]]:
        """POST Zoho's callback for these record ids to every live channel watching the module."""
        ids = [str(i) for i in ids]
        answers = []
        for channel in live_channels(module):
            with fake.lock:
                affected = [
                    {"id": rid, "fields": sorted(k for k in fake.records.get(module, {}).get(rid, {}) if k != "id")}
                    for rid in ids
                ]
            body = {
                "server_time": int(fake.now() * 1000),
                "query_params": {},
                "module": module,
                "resource_uri": f"{fake.url}/crm/v2/{module}",
                "ids": ids,
                "affected_fields": affected if channel.get("return_affected_field_values") else [],
                "operation": operation,
                "channel_id": channel["channel_id"],
                "token": channel.get("token"),
            }
            status, text = fake.notify_transport(channel["notify_url"], body)
            with fake.lock:
                fake.notifications_sent.append((channel["notify_url"], body, status))
            answers.append((status, text))
        return answers

    fake.put_record = put_record
    fake.live_channels = live_channels
    fake.fire_notification = fire_notification

    # -- the watch endpoints ----------------------------------------------------------------
    def validate_channel(item, index: int):
        """(channel dict, None) or (None, per-item error) as Zoho reports them."""
        if not isinstance(item, dict):
            return None, _watch_error("INVALID_DATA", "invalid data", {"index": index})
        channel_id = item.get("channel_id")
        if isinstance(channel_id, bool) or not re.fullmatch(r"[0-9]{1,19}", str(channel_id if channel_id is not None else "")):
            return None, _watch_error("INVALID_DATA", "invalid data", {"api_name": "channel_id", "index": index})
        events = item.get("events")
        if not isinstance(events, list) or not events:
            return None, _watch_error("MANDATORY_NOT_FOUND", "required field not found", {"api_name": "events", "index": index})
        for event in events:
            module, _, operation = str(event).partition(".")
            if module not in MODULES or operation not in OPERATIONS:
                return None, _watch_error("INVALID_MODULE" if module not in MODULES else "INVALID_DATA",
                                          "invalid data", {"api_name": "events", "index": index})
        notify_url = item.get("notify_url")
        if not isinstance(notify_url, str) or not re.match(r"https?://[^\s/]+", notify_url):
            return None, _watch_error("MANDATORY_NOT_FOUND" if not notify_url else "INVALID_DATA",
                                      "invalid data", {"api_name": "notify_url", "index": index})
        token = item.get("token")
        if token is not None and (not isinstance(token, str) or len(token) > 50):
            return None, _watch_error("INVALID_DATA", "the token may have at most 50 characters",
                                      {"api_name": "token", "index": index, "maximum_length": 50})
        now = fake.now()
        expires_at = now + DEFAULT_EXPIRY
        expiry = item.get("channel_expiry")
        if expiry is not None:
            parsed = parse_time(str(expiry))
            if parsed is None:
                return None, _watch_error("INVALID_DATA", "invalid data", {"api_name": "channel_expiry", "index": index})
            if now < parsed <= now + MAX_EXPIRY:
                expires_at = parsed
        return {
            "events": list(events),
            "notify_url": notify_url,
            "token": token,
            "expires_at": expires_at,
            "return_affected_field_values": bool(item.get("return_affected_field_values")),
        }, None

    def subscribed(channel_id: str, channel: dict) -> dict:
        return {
            "code": "SUCCESS",
            "details": {
                "events": [
                    {
                        "channel_expiry": zoho_time(channel["expires_at"]),
                        "resource_uri": f"{fake.url}/crm/v8/{event.split('.')[0]}",
                        "resource_id": str(abs(hash(event.split(".")[0])) % 10**15),
                        "resource_name": event.split(".")[0],
                        "channel_id": channel_id,
                    }
                    for event in channel["events"]
                ]
            },
            "message": "Successfully subscribed for actions-watch of the given module",
            "status": "success",
        }

    def write_watch(req, replace_only: bool):
        denied = fake.check_auth(req, scope="ZohoCRM.notifications.")
        if denied:
            return denied
        if fake.api_down:
            return _error(503, "INTERNAL_ERROR", "service unavailable")
        try:
            body = req.json()
        except ValueError:
            return _error(400, "INVALID_DATA", "body is not JSON")
        items = body.get("watch") if isinstance(body, dict) else None
        if not isinstance(items, list) or not items:
            return _error(400, "MANDATORY_NOT_FOUND", "required field not found", {"api_name": "watch"})
        results, failed = [], 0
        for index, item in enumerate(items):
            channel, problem = validate_channel(item, index)
            if problem is None:
                channel_id = str(item["channel_id"])
                with fake.lock:
                    if replace_only and channel_id not in fake.channels:
                        problem = _watch_error("INVALID_DATA", "the given channel does not exist",
                                               {"api_name": "channel_id", "index": index})
                    else:
                        fake.channels[channel_id] = channel
            if problem is not None:
                failed += 1
                results.append(problem)
            else:
                results.append(subscribed(channel_id, channel))
        status = 200 if not failed else (400 if failed == len(items) else 207)
        return Response(status, {"watch": results})

    @fake.route("POST", r"/crm/v8/actions/watch", name="watch_subscribe")
    def watch_subscribe(req):
        return write_watch(req, replace_only=False)

    @fake.route("PUT", r"/crm/v8/actions/watch", name="watch_update")
    def watch_update(req):
        return write_watch(req, replace_only=True)

    @fake.route("PATCH", r"/crm/v8/actions/watch", name="watch_patch")
    def watch_patch(req):
        return write_watch(req, replace_only=True)

    @fake.route("DELETE", r"/crm/v8/actions/watch", name="watch_delete")
    def watch_delete(req):
        denied = fake.check_auth(req, scope="ZohoCRM.notifications.")
        if denied:
            return denied
        if fake.api_down:
            return _error(503, "INTERNAL_ERROR", "service unavailable")
        ids = [i for i in req.query.get("channel_ids", "").split(",") if i]
        if not ids:
            return _error(400, "REQUIRED_PARAM_MISSING", "One of the expected parameter is missing", {"param": "channel_ids"})
        results = []
        for channel_id in ids:
            with fake.lock:
                channel = fake.channels.pop(channel_id, None)
            if channel is None:
                results.append(_watch_error("INVALID_DATA", "the given channel does not exist", {"channel_id": channel_id}))
                continue
            for event in channel["events"]:
                results.append({
                    "code": "SUCCESS",
                    "details": {"resource_uri": f"{fake.url}/crm/v8/{event.split('.')[0]}", "channel_id": channel_id},
                    "message": "Successfully un-subscribed from actions-watch",
                    "status": "success",
                })
        return Response(200, {"watch": results})

    # -- record reads -----------------------------------------------------------------------
    def select(record: dict, fields) -> dict:
        if not fields:
            return dict(record)
        return {k: record.get(k) for k in ["id", *fields]}

    def read_guard(req):
        denied = fake.check_auth(req)
        if denied:
            return denied
        if fake.api_down:
            return _error(503, "INTERNAL_ERROR", "service unavailable")
        module = req.match.group("module")
        if module not in MODULES:
            return _error(400, "INVALID_MODULE", "the module name given seems to be invalid", {})
        return None

    @fake.route("GET", r"/crm/v8/(?P<module>[A-Za-z_]+)/(?P<record_id>[0-9]+)", name="record_get")
    def record_get(req):
        problem = read_guard(req)
        if problem:
            return problem
        module = req.match.group("module")
        fields = [f for f in req.query.get("fields", "").split(",") if f]
        with fake.lock:
            record = fake.records.get(module, {}).get(req.match.group("record_id"))
            record = None if record is None else select(record, fields)
        if record is None:
            return Response(204)
        return Response(200, {"data": [record]})

    @fake.route("GET", r"/crm/v8/(?P<module>[A-Za-z_]+)", name="records_list")
    def records_list(req):
        problem = read_guard(req)
        if problem:
            return problem
        module = req.match.group("module")
        fields = [f for f in req.query.get("fields", "").split(",") if f]
        if "ids" in req.query:
            ids = [i for i in req.query["ids"].split(",") if i]
            if len(ids) > 100:
                return _error(400, "LIMIT_EXCEEDED", "at most 100 ids", {"param": "ids", "limit": 100})
            with fake.lock:
                found = [select(fake.records.get(module, {})[i], fields) for i in ids if i in fake.records.get(module, {})]
            if not found:
                return Response(204)
            return Response(200, {"data": found, "info": {"per_page": len(found), "count": len(found), "page": 1, "more_records": False}})
        if not fields:
            return _error(400, "REQUIRED_PARAM_MISSING", "One of the expected parameter is missing", {"param": "fields"})
        try:
            per_page = int(req.query.get("per_page", MAX_PER_PAGE))
        except ValueError:
            return _error(400, "INVALID_DATA", "invalid data", {"param": "per_page"})
        if not 1 <= per_page <= MAX_PER_PAGE:
            return _error(400, "INVALID_DATA", "invalid data", {"param": "per_page", "maximum": MAX_PER_PAGE})
        since = None
        if "if-modified-since" in req.headers:
            since = parse_time(req.headers["if-modified-since"])
            if since is None:
                return _error(400, "INVALID_DATA", "invalid data", {"header": "If-Modified-Since"})
        sort_by = req.query.get("sort_by", "id")
        if sort_by not in ("id", "Created_Time", "Modified_Time"):
            return _error(400, "INVALID_DATA", "invalid data", {"param": "sort_by"})
        descending = req.query.get("sort_order", "desc") == "desc"

        if "page_token" in req.query:
            if "page" in req.query:
                return _error(400, "INVALID_DATA", "page and page_token cannot be given together", {"param": "page"})
            with fake.lock:
                state = fake._page_tokens.get(req.query["page_token"])
            if state is None or state["module"] != module:
                return _error(400, "INVALID_DATA", "the page_token is invalid or expired", {"param": "page_token"})
            offset = state["offset"]
        else:
            try:
                page = int(req.query.get("page", 1))
            except ValueError:
                return _error(400, "INVALID_DATA", "invalid data", {"param": "page"})
            if page < 1:
                return _error(400, "INVALID_DATA", "invalid data", {"param": "page"})
            offset = (page - 1) * per_page
            if offset >= PAGE_LIMIT:
                return _error(400, "DISCRETE_PAGINATION_LIMIT_EXCEEDED",
                              "cannot fetch more than 2000 records with page; use page_token", {"limit": PAGE_LIMIT})

        with fake.lock:
            rows = [
                dict(r) for r in fake.records.get(module, {}).values()
                if since is None or (parse_time(r.get("Modified_Time", "")) or 0) > since
            ]

        def key(r):
            if sort_by == "id":
                return (int(r["id"]),)
            return (parse_time(r.get(sort_by) or "") or 0, int(r["id"]))

        if since is not None and not rows:
            return Response(304)  # as Zoho: nothing modified since then (its SDKs' NOT_MODIFIED_STATUS_CODE)
        rows.sort(key=key, reverse=descending)
        chunk = rows[offset:offset + per_page]
        if not chunk:
            return Response(204)
        more = offset + per_page < len(rows)
        info = {"per_page": per_page, "count": len(chunk), "sort_by": sort_by,
                "sort_order": "desc" if descending else "asc", "more_records": more,
                "next_page_token": None, "previous_page_token": None, "page_token_expiry": None}
        if "page_token" not in req.query:
            info["page"] = offset // per_page + 1
        # Past the page limit, Zoho hands out a token for the next page instead of page numbers.
        if more and (offset + per_page >= PAGE_LIMIT or "page_token" in req.query):
            token = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            with fake.lock:
                fake._page_tokens[token] = {"module": module, "offset": offset + per_page}
            info["next_page_token"] = token
            info["page_token_expiry"] = zoho_time(fake.now() + 86400)
        return Response(200, {"data": [select(r, fields) for r in chunk], "info": info})

    fake.zoho_time = zoho_time
