"""The events API: `POST /api/v1/events` lets OnPrintShop (or a script) queue pushes at once."""
from __future__ import annotations

import time

from flask import Blueprint, current_app, jsonify, request

from ..outbound import events
from .bodies import read_bounded
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
    body = read_bounded(MAX_BODY)
    answer, status = events.receive(runtime(), request.headers, body, time.time())
    return jsonify(answer), status
