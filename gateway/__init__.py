"""The OnPrintShop ⇄ Zoho CRM gateway: `create_app` reads the settings, opens the runtime (state
store, vault) and registers the HTTP side and the commands (docs/architecture.md)."""
from __future__ import annotations

import os

import sqlalchemy as sa
from flask import Flask
from limits.errors import ConfigurationError as LimitsConfigurationError
from werkzeug.middleware.proxy_fix import ProxyFix

from . import cli, logs, ops, settings, web
from .errors import ConfigError
from .runtime import Runtime
from .timezones import zone

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAX_ADMIN_BODY = 1024 * 1024  # the admin forms; webhooks bound themselves tighter (64 KiB)


def default_instance_path() -> str:
    return os.path.abspath(os.environ.get("GATEWAY_INSTANCE_PATH") or os.path.join(REPO_ROOT, "instance"))


def create_app(test_config: dict | None = None) -> Flask:
    test_config = dict(test_config or {})
    instance_path = os.path.abspath(test_config.pop("INSTANCE_PATH", None) or default_instance_path())
    app = Flask(
        __name__,
        instance_path=instance_path,
        instance_relative_config=True,
        template_folder=os.path.join(REPO_ROOT, "templates"),
        static_folder=os.path.join(REPO_ROOT, "static"),
    )
    os.makedirs(instance_path, exist_ok=True)

    values = settings.load(instance_path, test_config=test_config)
    app.config.update(values)
    app.config.update(
        MAX_CONTENT_LENGTH=MAX_ADMIN_BODY,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=values["GATEWAY_ENV"] == "production",
        PERMANENT_SESSION_LIFETIME=8 * 3600,
        WTF_CSRF_TIME_LIMIT=8 * 3600,
        RATELIMIT_STORAGE_URI=values["RATELIMIT_STORAGE_URI"],
        RATELIMIT_HEADERS_ENABLED=True,
        # A shared counter store (Redis) that goes away must not turn Zoho's deliveries into
        # errors: count in this process meanwhile.
        RATELIMIT_IN_MEMORY_FALLBACK_ENABLED=True,
        RATELIMIT_SWALLOW_ERRORS=True,
        # Said explicitly: the one `limiter` object keeps the switch of the last app bound to it,
        # so an app that does not say would inherit another's "off" (seen across tests).
        RATELIMIT_ENABLED=True,
    )
    for key in ("TESTING", "WTF_CSRF_ENABLED", "RATELIMIT_ENABLED", "SERVER_NAME"):
        if key in test_config:
            app.config[key] = test_config[key]

    hops = app.config["GATEWAY_PROXY_HOPS"]
    if hops:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_port=hops, x_prefix=0)

    logs.configure(app.config["GATEWAY_LOG_FORMAT"])
    ops.check_settings(app.config, instance_path)
    zone(app.config["GATEWAY_ZOHO_TIMEZONE"], "GATEWAY_ZOHO_TIMEZONE")
    try:
        web.init_app(app)
    except LimitsConfigurationError as exc:
        raise ConfigError(f"RATELIMIT_STORAGE_URI cannot be used: {exc}") from None
    try:
        app.extensions["gateway"] = Runtime(app.config, instance_path)
    except (sa.exc.ArgumentError, ValueError, AttributeError, TypeError) as exc:
        raise ConfigError(f"DATABASE_URL cannot be used ({exc.__class__.__name__}): check its host, port and options") from None
    cli.init_app(app)
    return app
