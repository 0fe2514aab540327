"""The simulator's Notification API: watch channels (`/crm/v8/actions/watch`), validated as Zoho
does, and `fire_notification`, which POSTs Zoho's callback body to every live channel watching a
module's edits (docs/simulator.md)."""
from __future__ import annotations

import json
import re

import requests

from .messages import Response, error
from .reads import MODULES
from .times import parse_time, zoho_time

OPERATIONS = ("create", "edit", "delete", "all")
MAX_EXPIRY = 7 * 86400
DEFAULT_EXPIRY = 3600


def _watch_error(code: str, message: str, details: dict) -> dict:
    return {"code": code, "details": details, "message": message, "status": "error"}


def install(sim) -> None:
    sim.channels = {}  # channel_id (str) -> dict(events, notify_url, token, expires_at, ...)
    sim.api_down = False
    sim.notifications_sent = []  # (url, body, status) of every fired callback

    def _post_json(url: str, body: dict):
        answer = requests.post(url, data=json.dumps(body), headers={"Content-Type": "application/json"}, timeout=30)
        return answer.status_code, answer.text

    sim.notify_transport = _post_json

    # -- callbacks --------------------------------------------------------------------------
    def live_channels(module: str) -> list[dict]:
        now = sim.now()
        with sim.lock:
            return [
                dict(ch, channel_id=cid)
                for cid, ch in sim.channels.items()
                if ch["expires_at"] > now and (f"{module}.edit" in ch["events"] or f"{module}.all" in ch["events"])
            ]

    def fire_notification(module: str, ids, operation: str = "update") -> list[tuple[int, str]]:
        """POST Zoho's callback for these record ids to every live channel watching the module."""
        ids = [str(i) for i in ids]
        answers = []
        for channel in live_channels(module):
            with sim.lock:
                affected = [
                    {"id": rid, "fields": sorted(k for k in sim.records.get(module, {}).get(rid, {}) if k != "id")}
                    for rid in ids
                ]
            body = {
                "server_time": int(sim.now() * 1000),
                "query_params": {},
                "module": module,
                "resource_uri": f"{sim.url}/crm/v2/{module}",
                "ids": ids,
                "affected_fields": affected if channel.get("return_affected_field_values") else [],
                "operation": operation,
                "channel_id": channel["channel_id"],
                "token": channel.get("token"),
            }
            status, text = sim.notify_transport(channel["notify_url"], body)
            with sim.lock:
                sim.notifications_sent.append((channel["notify_url"], body, status))
            answers.append((status, text))
        return answers

    sim.live_channels = live_channels
    sim.fire_notification = fire_notification

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
        now = sim.now()
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
                        "resource_uri": f"{sim.url}/crm/v8/{event.split('.')[0]}",
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
        denied = sim.check_auth(req, scope="ZohoCRM.notifications.")
        if denied:
            return denied
        if sim.api_down:
            return error(503, "INTERNAL_ERROR", "service unavailable")
        try:
            body = req.json()
        except ValueError:
            return error(400, "INVALID_DATA", "body is not JSON")
        items = body.get("watch") if isinstance(body, dict) else None
        if not isinstance(items, list) or not items:
            return error(400, "MANDATORY_NOT_FOUND", "required field not found", {"api_name": "watch"})
        results, failed = [], 0
        for index, item in enumerate(items):
            channel, problem = validate_channel(item, index)
            if problem is None:
                channel_id = str(item["channel_id"])
                with sim.lock:
                    if replace_only and channel_id not in sim.channels:
                        problem = _watch_error("INVALID_DATA", "the given channel does not exist",
                                               {"api_name": "channel_id", "index": index})
                    else:
                        sim.channels[channel_id] = channel
            if problem is not None:
                failed += 1
                results.append(problem)
            else:
                results.append(subscribed(channel_id, channel))
        status = 200 if not failed else (400 if failed == len(items) else 207)
        return Response(status, {"watch": results})

    @sim.route("POST", r"/crm/v8/actions/watch", name="watch_subscribe")
    def watch_subscribe(req):
        return write_watch(req, replace_only=False)

    @sim.route("PUT", r"/crm/v8/actions/watch", name="watch_update")
    def watch_update(req):
        return write_watch(req, replace_only=True)

    @sim.route("PATCH", r"/crm/v8/actions/watch", name="watch_patch")
    def watch_patch(req):
        return write_watch(req, replace_only=True)

    @sim.route("DELETE", r"/crm/v8/actions/watch", name="watch_delete")
    def watch_delete(req):
        denied = sim.check_auth(req, scope="ZohoCRM.notifications.")
        if denied:
            return denied
        if sim.api_down:
            return error(503, "INTERNAL_ERROR", "service unavailable")
        ids = [i for i in req.query.get("channel_ids", "").split(",") if i]
        if not ids:
            return error(400, "REQUIRED_PARAM_MISSING", "One of the expected parameter is missing", {"param": "channel_ids"})
        results = []
        for channel_id in ids:
            with sim.lock:
                channel = sim.channels.pop(channel_id, None)
            if channel is None:
                results.append(_watch_error("INVALID_DATA", "the given channel does not exist", {"channel_id": channel_id}))
                continue
            for event in channel["events"]:
                results.append({
                    "code": "SUCCESS",
                    "details": {"resource_uri": f"{sim.url}/crm/v8/{event.split('.')[0]}", "channel_id": channel_id},
                    "message": "Successfully un-subscribed from actions-watch",
                    "status": "success",
                })
        return Response(200, {"watch": results})
