"""The Zoho simulator served by the development server at `/zoho-simulator` (accounts server and
CRM API on one origin). Registered only when GATEWAY_ENV=development: in production these URLs
do not exist (docs/simulator.md)."""
from __future__ import annotations

import time

from flask import Blueprint, current_app, request

from ..simulator import Request, ZohoSimulator
from ..simulator.core import FIRST_ID
from ..simulator.messages import last_values
from .security import csrf

PREFIX = "/zoho-simulator"
EXTENSION = "zoho_simulator"
DEVELOPMENT_CONCURRENCY = 10  # Zoho's Standard edition: more calls at once are answered 429

bp = Blueprint("zoho_simulator", __name__, url_prefix=PREFIX)
csrf.exempt(bp)  # the gateway calls it as it calls Zoho: with tokens, never a session


def init_app(app) -> None:
    """One simulator per process (its records live in memory); record ids start from the clock,
    so a restarted simulator never hands out an id the gateway linked before."""
    simulator = ZohoSimulator(first_id=FIRST_ID + int(time.time()) % 10**9 * 10_000)
    simulator.concurrency_limit = DEVELOPMENT_CONCURRENCY
    app.extensions[EXTENSION] = simulator
    app.register_blueprint(bp)


def simulator() -> ZohoSimulator:
    return current_app.extensions[EXTENSION]


def served_at(base_url: str) -> str:
    """The simulator's URL under the gateway's base URL."""
    return base_url.rstrip("/") + PREFIX


@bp.route("/<path:path>", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
def serve(path):
    sim = simulator()
    sim.base_url = served_at(request.url_root)  # answers name the origin the caller reached
    answer = sim.handle(Request(
        method=request.method, path="/" + path, query=last_values(request.query_string.decode("utf-8", "replace")),
        headers={key.lower(): value for key, value in request.headers.items()}, body=request.get_data(),
    ))
    payload, headers = answer.wire()
    response = current_app.response_class(payload, status=answer.status)
    for key, value in headers:
        if key.lower() != "content-length":  # Werkzeug sets it from the payload
            response.headers[key] = value
    return response
