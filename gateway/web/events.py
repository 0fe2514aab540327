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
    answer, status = events.receive(runtime(), request.headers, body, time.time())
    return jsonify(answer), status
