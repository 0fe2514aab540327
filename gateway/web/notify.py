"""Zoho's Notification API callback: `POST /webhooks/zoho/notify`."""
from __future__ import annotations

import json

from flask import Blueprint, current_app, jsonify, request

from ..errors import RequestError
from ..inbound import notify_pending
from .bodies import read_bounded
from .context import runtime
from .security import csrf, limiter, refused

bp = Blueprint("notify", __name__, url_prefix="/webhooks")
csrf.exempt(bp)  # Zoho posts here; the channel token is the check

MAX_BODY = notify_pending.MAX_BODY


def _rate_limit() -> str:
    return current_app.config["GATEWAY_WEBHOOK_RATE_LIMIT"]


def _read_callback() -> dict:
    if request.mimetype not in ("application/json", "text/plain"):
        raise RequestError("send the notification as application/json", status=415)
    raw = read_bounded(MAX_BODY)
    try:
        body = json.loads(raw or b"null")
    except (ValueError, RecursionError):  # RecursionError: absurdly deep nesting
        raise RequestError("the body is not valid JSON", status=400) from None
    if not isinstance(body, dict):
        raise RequestError("the body must be a JSON object", status=400)
    return body


@bp.route("/zoho/notify", methods=["POST"])
# Only refused callbacks count: Zoho's own, however many, never fill the limit.
@limiter.limit(_rate_limit, deduct_when=refused)
def zoho_notify():
    """Verify the callback, remember the ids, fetch and apply the records."""
    answer, status = notify_pending.handle_callback(runtime(), _read_callback())
    return jsonify(answer), status
