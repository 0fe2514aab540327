"""Security wired into every response and every admin page: CSRF, headers, login, rate limits.

`limiter` and `csrf` are created unbound and bound per app in `init_app`; `login_required`
guards every admin view.
"""
from __future__ import annotations

import functools

from flask import current_app, redirect, request, session, url_for
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_wtf.csrf import CSRFProtect

csrf = CSRFProtect()
limiter = Limiter(key_func=get_remote_address, default_limits=[], headers_enabled=True)

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
)


def refused(response) -> bool:
    """`deduct_when` of the machine-called endpoints (Zoho's webhooks and callbacks, the events API):
    only a refused request (4xx) counts against the limit.

    Why: Zoho sends from shared outgoing addresses, and a burst of edits in Zoho is a burst of
    genuine deliveries that Zoho never retries. Counting those would 429 (and lose) real updates;
    the limit is there to bound what guessing secrets and sending garbage costs us. 429 itself is
    not counted: it costs nothing, and counting it would keep an address blocked for as long as a
    flood goes on, with our own deliveries from that address behind it.
    """
    return 400 <= response.status_code < 500 and response.status_code != 429


def init_app(app) -> None:
    csrf.init_app(app)
    limiter.init_app(app)

    @app.after_request
    def _headers(response):
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        if request.path.startswith("/admin"):
            response.headers.setdefault("Cache-Control", "no-store")
        if app.config["GATEWAY_ENV"] == "production":
            response.headers.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
        return response


def login_required(view):
    """Admin pages need a current admin session; others are sent to the login page.

    Current: logged in within the session lifetime (8 h), made with the admin password in force
    (a new password ends every session), and not logged out (gateway.admin.auth).
    """

    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        from . import runtime
        from .admin import auth

        lifetime = current_app.permanent_session_lifetime.total_seconds()
        if not auth.session_is_current(runtime.current(), session, current_app.secret_key, lifetime):
            session.clear()
            return redirect(url_for("admin.login", next=request.full_path if request.method == "GET" else None))
        return view(*args, **kwargs)

    return wrapped
