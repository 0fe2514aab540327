"""Zoho's workflow webhooks, `POST /webhooks/zoho/contacts` and `/deals`: bound the body, check the
secret, validate, hand the update to the inbox, answer its outcome (docs/inbound.md)."""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request

from ..errors import RequestError
from ..inbound import body, inbox, parse, secrets
from .bodies import read_bounded
from .context import runtime
from .security import csrf, limiter, refused

bp = Blueprint("webhooks", __name__, url_prefix="/webhooks")
csrf.exempt(bp)  # Zoho posts here; the shared secret is the check, not a session

TOKEN_HEADER = "X-Webhook-Token"


def _rate_limit() -> str:
    return current_app.config["GATEWAY_WEBHOOK_RATE_LIMIT"]


_LIMITED_ENDPOINTS = frozenset({"webhooks.contacts", "webhooks.deals"})


@limiter.request_filter
def _carries_the_secret() -> bool:
    """A delivery with the right secret in the header (or query) is never rate limited, so a
    guesser on Zoho's shared addresses cannot get Zoho's own deliveries refused."""
    if request.endpoint not in _LIMITED_ENDPOINTS:
        return False
    given = request.headers.get(TOKEN_HEADER)
    if given is None:
        given = request.args.get("token")
    return given is not None and secrets.check_webhook_token(runtime(), given)


# One per-address limit for both endpoints, set on the blueprint so the limiter checks it only once.
limiter.shared_limit(_rate_limit, scope="zoho-webhooks", deduct_when=refused)(bp)


def _unauthorized(missing: bool):
    message = (
        f"missing webhook secret: send it in the {TOKEN_HEADER} header" if missing
        else "wrong webhook secret: copy the current one from the admin page or `flask --app wsgi webhook-secret`"
    )
    return RequestError(message, status=401)


def _read_raw() -> bytes:
    return read_bounded(body.MAX_BODY, f"the body is larger than {body.MAX_BODY // 1024} KiB")


def receive_delivery(module: str):
    rt = runtime()
    header_token = request.headers.get(TOKEN_HEADER)
    query_token = request.args.get("token")
    if header_token is not None or query_token is not None:
        # Checked before the body is read: without the secret nothing of the body is read or judged.
        if not secrets.check_webhook_token(rt, header_token if header_token is not None else query_token):
            raise _unauthorized(missing=not (header_token or query_token))
        params = body.read_body(request.content_type, _read_raw())
        params.pop("token", None)
    else:
        raw = _read_raw()
        try:
            params = body.read_body(request.content_type, raw)
        except RequestError as exc:
            if exc.status == 413:
                raise
            raise _unauthorized(missing=True) from None
        token = params.pop("token", None)
        if not isinstance(token, str) or not secrets.check_webhook_token(rt, token):
            raise _unauthorized(missing=token in (None, ""))

    ops = rt.ops
    # An unknown stage is looked up once more (a status just added); without the database, the cached names decide.
    update = parse.validate(module, params, ops.mapping, rt.config["GATEWAY_ZOHO_TIMEZONE"], statuses=ops.status_names(),
                            refresh_statuses=lambda: ops.status_names(refresh=True),
                            date_order=rt.config["GATEWAY_ZOHO_DATE_ORDER"])
    outcome = inbox.receive(rt, module, update, source="webhook")
    return jsonify(outcome.body()), outcome.http_status


@bp.post("/zoho/contacts")
def contacts():
    return receive_delivery("Contacts")


@bp.post("/zoho/deals")
def deals():
    return receive_delivery("Deals")
