"""Security wired into every response and admin page: CSRF, headers, login, rate limits; `limiter`
and `csrf` are bound per app in `init_app` (docs/security.md)."""
from __future__ import annotations

import functools

from flask import current_app, redirect, request, session, url_for
from flask.sessions import SecureCookieSessionInterface
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_wtf.csrf import CSRFProtect

from ..admin import auth
from .context import runtime

csrf = CSRFProtect()
limiter = Limiter(key_func=get_remote_address, default_limits=[], headers_enabled=True)

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
)


def refused(response) -> bool:
    """`deduct_when` of the machine-called endpoints: only a refused request (4xx, not 429)
    counts against the limit, so a burst of Zoho's genuine deliveries is never refused."""
    return 400 <= response.status_code < 500 and response.status_code != 429


class CookieSessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie session, cheaper for requests without a cookie (Zoho's deliveries, the
    events API, health checks): no signing serializer is built, and an untouched empty session is not saved."""

    def open_session(self, app, request):
        if app.secret_key and not request.cookies.get(self.get_cookie_name(app)):
            return self.session_class()
        return super().open_session(app, request)

    def save_session(self, app, session, response) -> None:
        if not session and not session.modified and not session.accessed:
            return
        super().save_session(app, session, response)


def init_app(app) -> None:
    app.session_interface = CookieSessionInterface()
    csrf.init_app(app)
    limiter.init_app(app)

    @app.after_request
    def _headers(response):
        # `setdefault` for each (a view's own value is kept), in one pass over the headers
        # instead of two per header.
        headers = response.headers
        present = {key.lower() for key, _value in headers}
        for name, value in _wanted_headers(request.path, app.config["GATEWAY_ENV"] == "production"):
            if name.lower() not in present:
                headers.add(name, value)
        return response


SECURITY_HEADERS = (
    ("Content-Security-Policy", CSP),
    ("X-Frame-Options", "DENY"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "same-origin"),
)
ADMIN_HEADERS = (("Cache-Control", "no-store"),)
HSTS_HEADERS = (("Strict-Transport-Security", "max-age=31536000; includeSubDomains"),)


def _wanted_headers(path: str, production: bool) -> tuple:
    wanted = SECURITY_HEADERS
    if path.startswith("/admin"):
        wanted += ADMIN_HEADERS
    if production:
        wanted += HSTS_HEADERS
    return wanted


def login_required(view):
    """Admin pages need a current admin session (gateway.admin.auth); others go to the login page."""

    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        lifetime = current_app.permanent_session_lifetime.total_seconds()
        if not auth.session_is_current(runtime(), session, current_app.secret_key, lifetime):
            session.clear()
            return redirect(url_for("admin.login", next=request.full_path if request.method == "GET" else None))
        return view(*args, **kwargs)

    return wrapped
