"""The one place errors become HTTP answers: JSON under `/webhooks` and `/api`, plain pages elsewhere."""
from __future__ import annotations

import logging
import uuid

from flask import g, jsonify, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from ..errors import RequestError

log = logging.getLogger("gateway")

JSON_PREFIXES = ("/webhooks", "/api")  # these paths and everything below them


def wants_json() -> bool:
    path = request.path
    if path in ("/healthz", "/readyz"):
        return True
    return any(path == prefix or path.startswith(prefix + "/") for prefix in JSON_PREFIXES)


def register(app) -> None:
    @app.before_request
    def _no_automatic_options():
        # No CORS is offered (nothing calls these from a browser): OPTIONS is 405 in JSON, not Flask's empty 200.
        if request.method == "OPTIONS" and wants_json() and request.url_rule is not None:
            allowed = sorted(m for m in request.url_rule.methods or () if m not in ("OPTIONS", "HEAD"))
            raise MethodNotAllowed(valid_methods=allowed)

    @app.errorhandler(RequestError)
    def _request_error(exc: RequestError):
        if wants_json():
            return jsonify(exc.body()), exc.status
        return exc.message, exc.status

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        if wants_json():
            message = {
                413: "request body too large",
                404: "no such endpoint",
                405: f"method {request.method} not allowed here",
                429: "too many requests: slow down",
            }.get(exc.code, exc.description or exc.name)
            if exc.code == 400 and "CSRF" in (exc.description or ""):
                message = exc.description
            response = jsonify({"error": message})
            response.status_code = exc.code or 500
            if exc.code == 405 and getattr(exc, "valid_methods", None):
                response.headers["Allow"] = ", ".join(exc.valid_methods)
            if exc.code == 429 and getattr(exc, "retry_after", None):
                response.headers["Retry-After"] = str(exc.retry_after)
            return response
        return exc

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        # A failure of ours: log it with the request id, never the body, and say so plainly.
        request_id = getattr(g, "request_id", None) or uuid.uuid4().hex[:12]
        log.exception("unhandled error request_id=%s path=%s", request_id, request.path)
        if wants_json():
            return jsonify({"error": "the gateway could not handle this request now; try again", "request_id": request_id}), 503
        return f"Something went wrong on our side (request id {request_id}). Try again.", 500
