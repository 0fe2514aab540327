"""Health for the platform: `/healthz` (the process serves) and `/readyz` (its parts answer)."""
from __future__ import annotations

from flask import Blueprint, jsonify

from .. import ops
from ..zoho import connection
from .context import runtime

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz():
    rt = runtime()
    parts: dict[str, str] = {}
    # `zoho` is always one of its three values: a connection that cannot be read is not usable,
    # so "not_configured", and `zoho_error` says why.
    try:
        rt.store.ping()
        parts["state_store"] = "ok"
    except Exception as exc:  # the body says which part is down; never a traceback
        parts["state_store"] = f"unavailable: {exc.__class__.__name__}"
    name, state = ops.readiness(rt.config, lambda: rt.ops)  # ops_database, or ops_api for a hosted store
    parts[name] = state
    try:
        parts["zoho"] = connection.state(rt)
        if parts["zoho"] != connection.NOT_CONFIGURED:
            problem = connection.unreadable_secrets(rt)
            if problem:  # e.g. an old Fernet key dropped before rotate-keys: every refresh would fail
                parts["zoho_error"] = problem
    except Exception as exc:
        parts["zoho"] = "not_configured"
        parts["zoho_error"] = exc.__class__.__name__
    ready = parts["state_store"] == "ok"
    return jsonify({"status": "ready" if ready else "unavailable", **parts}), 200 if ready else 503
