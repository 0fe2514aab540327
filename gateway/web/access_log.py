"""One access log line per request, with a request id; query secrets masked, bodies never logged."""
from __future__ import annotations

import logging
import time

from flask import g, request

from ..logs import mask_query, request_id_from

def init_app(app) -> None:
    access = logging.getLogger("gateway.access")

    @app.before_request
    def _start():
        g.request_id = request_id_from(request.headers.get("X-Request-Id"))
        g.started = time.perf_counter()

    @app.after_request
    def _access_line(response):
        req = request._get_current_object()  # one proxy lookup for the several fields read
        started = g.get("started")
        request_id = g.get("request_id")
        duration_ms = round((time.perf_counter() - (started if started is not None else time.perf_counter())) * 1000, 1)
        path = req.path
        query = req.query_string.decode("latin-1")
        if query:
            path += "?" + mask_query(query)
        response.headers["X-Request-Id"] = request_id or ""
        method, status = req.method, response.status_code
        access.info(
            "%s %s %s %sms request_id=%s",
            method, path, status, duration_ms, request_id,
            extra={
                "request_id": request_id, "method": method, "path": path,
                "status": status, "duration_ms": duration_ms, "remote": req.remote_addr,
            },
        )
        return response
