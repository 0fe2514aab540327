"""OnPrintShop as inbound and outbound see it: one port (`port.py`) and the backend behind it;
nothing outside this package knows which backend runs (`open_backend` chooses)."""
from __future__ import annotations

import os

import sqlalchemy as sa

from ..timezones import zone
from . import mapping as mapping_module
from . import api as api_backend
from .api import connect as api_connect
from .api import credentials as api_credentials
from .database import OpsDatabase, demo
from .port import (KINDS, Applied, Backend, Customer, OpsBusy, OpsError, OpsNeedsMoreCalls, OpsRefused, OpsUnavailable,
                   Order, Status)

__all__ = ["KINDS", "Applied", "Backend", "Customer", "OpsBusy", "OpsError", "OpsNeedsMoreCalls", "OpsRefused", "OpsUnavailable", "Order",
           "Status", "check_settings", "open_backend", "configure_api", "api_connection", "readiness", "create_demo", "is_embedded_demo", "demo_summary", "DemoTablesExist"]


class DemoTablesExist(Exception):
    """The OnPrintShop database already has some of the reference tables (`init-ops-demo`)."""


def check_settings(config, instance_path: str | None) -> None:
    """At start-up: a wrong mapping file or OPS_TIMEZONE stops the app with one line naming it."""
    mapping_module.load(instance_path)
    zone(config.get("OPS_TIMEZONE") or "UTC", "OPS_TIMEZONE")


def open_backend(config, instance_path: str | None, store=None, vault=None) -> Backend:
    """The backend OPS_BACKEND chooses, with the store's mapping (`instance/mapping.toml`); the API
    backend keeps its token, limits and copies of records in the state store (`store`, `vault`)."""
    if config.get("OPS_BACKEND") == "api":
        return api_backend.OpsApi(config, mapping_module.load(instance_path), store, vault)
    return OpsDatabase.from_config(config, mapping_module.load(instance_path))


def configure_api(rt, *, url: str, client_id: str, client_secret: str):
    """Check a hosted store's API client (a token, the statuses) and save it, secret in the vault."""
    return api_connect.configure(rt, url=url, client_id=client_id, client_secret=client_secret)


def readiness(config, backend) -> tuple[str, str]:
    """/readyz's OnPrintShop part: (name, "ok" | "unavailable…" | "not_configured"); `backend()` opens it."""
    try:
        return backend().readiness()
    except Exception as exc:  # the body says which part is down; never a traceback
        return ("ops_api" if config.get("OPS_BACKEND") == "api" else "ops_database"), f"unavailable: {exc.__class__.__name__}"


def api_connection(rt) -> dict:
    """The saved API client as the admin page shows it (masked), and which settings the environment sets."""
    return api_credentials.shown(rt.config, rt.store)


def is_embedded_demo(backend, instance_path: str) -> bool:
    """Is this development's embedded demo store, the SQLite file ops.db in the instance folder?"""
    if not isinstance(backend, OpsDatabase):
        return False
    url = sa.engine.make_url(backend.url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return False
    return os.path.realpath(url.database) == os.path.realpath(os.path.join(instance_path, "ops.db"))


def create_demo(backend, force: bool = False, only_if_absent: bool = False) -> bool:
    """Create the reference schema with demo rows; True when created. `only_if_absent`: do nothing if
    any table exists; else DemoTablesExist when some do (`force` drops them first)."""
    if not isinstance(backend, OpsDatabase):
        raise ValueError("demo data can only be created in an OnPrintShop database (OPS_BACKEND=database)")
    if only_if_absent and backend.existing_tables():
        return False
    try:
        demo.create(backend, force=force)
    except demo.TablesExist as exc:
        raise DemoTablesExist(str(exc)) from None
    return True


def demo_summary(backend) -> str:
    """What `init-ops-demo` made, in one line."""
    return (f"created {', '.join(t.name for t in backend.tables.values())} with {len(demo.DEMO_CUSTOMERS)} customers "
            f"and {len(demo.DEMO_ORDERS)} orders")
