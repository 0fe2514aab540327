"""The HTTP side: every blueprint, the error answers, security and the access log."""
from __future__ import annotations

from . import (access_log, admin, errors, events, health, notify, security, simulator_api, simulator_page, webhooks,
               zoho_oauth)


def init_app(app) -> None:
    access_log.init_app(app)
    errors.register(app)
    security.init_app(app)
    for blueprint in (health.bp, admin.bp, zoho_oauth.bp, webhooks.bp, notify.bp, events.bp):
        app.register_blueprint(blueprint)
    if app.config["GATEWAY_ENV"] == "development":
        # The Zoho simulator and its page exist only here: in production their URLs are 404.
        simulator_api.init_app(app)
        app.register_blueprint(simulator_page.bp)
