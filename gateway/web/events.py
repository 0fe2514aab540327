"""The events API: `POST /api/v1/events` lets OnPrintShop (or a script) queue pushes at once."""
from __future__ import annotations

import time

from flask import Blueprint, current_app, jsonify, request

from ..errors import RequestError
from ..outbound import events
from .context import runtime
from .security import csrf, limiter, refused

bp = Blueprint("events", __name__, url_prefix="/api/v1")
csrf.exempt(bp)  # signed by HMAC, not by a session: CSRF does not apply

MAX_BODY = events.MAX_BODY


def _rate_limit() -> str:
    return current_app.config.get("GATEWAY_WEBHOOK_RATE_LIMIT") or "600 per minute"


@bp.post("/events")
@limiter.limit(_rate_limit, deduct_when=refused)
def receive_events():
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise RequestError(f"request body too large (at most {MAX_BODY // 1024} KiB)", status=413)
    body = request.get_data(cache=False)
    if len(body) > MAX_BODY:
        raise RequestError(f"request body too large (at most {MAX_BODY // 1024} KiB)", status=413)
    rt = runtime()
    try:
        webhook_id = events.verify(events.valid_secrets(rt), request.headers, body, time.time())
    except events.SignatureError as exc:
        raise RequestError(exc.message, status=exc.status, parameter=exc.parameter) from None
    wanted, count = events.parse_events(body)
    if not events.accept(rt, webhook_id, wanted):
        # A sender retries whatever it did not see answered 2xx (a lost answer included): a repeat
        # is a success that queues nothing again, or the sender would retry it for days.
        return jsonify({"status": "duplicate", "count": 0}), 200
    return jsonify({"status": "accepted", "count": count}), 202
