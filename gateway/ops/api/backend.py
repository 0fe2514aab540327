"""The OnPrintShop API backend (`OPS_BACKEND=api`): a hosted store through its GraphQL API.

Records from the gateway's copy (`mirror`), changes found by `feed`, written by `ApiWriter`."""
from __future__ import annotations

import logging
import threading
import time

from ...settings import rate_limit
from ...state.limiter import Limiter
from ...timezones import LocalClock, zone
from .. import mapping as mapping_module
from ..port import OpsError, OpsUnavailable
from . import client, credentials, feed, mirror, records
from .connect import STATUSES_SETTING
from .token import TokenCache
from .writer import ApiWriter

log = logging.getLogger("gateway.ops.api")

STATUS_CACHE_SECONDS = 300.0
READY_RECHECK_SECONDS = 60.0
LISTING_PATIENCE = 10  # `push … --all` asks a page again after a 429, up to this many times in a row


class OpsApi(LocalClock):
    """A hosted store: its API client, the rate limit, the token, the gateway's copy of its records."""

    name = "api"
    connectable = True

    def __init__(self, config, mapping: mapping_module.Mapping, store, vault):
        super().__init__(zone(config.get("OPS_TIMEZONE") or "UTC", "OPS_TIMEZONE"))
        self.config = config
        self.mapping = mapping
        self.store = store
        self.vault = vault
        self.calls, self.window = rate_limit(config.get("OPS_API_RATE_LIMIT") or "120 per minute")
        # A permit rests a window (and a second for clock differences) after its call ended.
        self.limiter = Limiter(store, "ops_api", self.calls, cooldown=self.window + 1.0, hold=client.HOLD_SECONDS)
        self.api = client.GraphQL(config, store, vault, self.limiter, lambda mint: TokenCache(store, vault, mint), self.window)
        self.notify_customer = bool(config.get("OPS_API_NOTIFY_CUSTOMER"))
        self._status_lock = threading.Lock()
        self._statuses: tuple[float, dict[str, tuple[int, str]]] | None = None

    def describe(self) -> str:
        return "OnPrintShop's API"

    def dispose(self) -> None:
        pass

    # -- health -------------------------------------------------------------------------------
    def ping(self) -> bool:
        return self.readiness()[1] == "ok"

    def readiness(self) -> tuple[str, str]:
        if credentials.current(self.config, self.store, self.vault) is None:
            return "ops_api", "not_configured"
        if time.time() - self.api.last_ok > READY_RECHECK_SECONDS and not self.api.health().startswith("unavailable"):
            self.status_names(refresh=True)  # one cheap call at most a minute per process
        health = self.api.health()
        return "ops_api", "ok" if health == "ok" else health if health.startswith("unavailable") else "unavailable"

    def report(self) -> dict:
        state = self.readiness()[1]
        token = self.api.tokens.status()
        usage = self.limiter.usage()
        rows = [("Reached through", "its GraphQL API (OPS_BACKEND=api)"),
                ("Store", credentials.shown(self.config, self.store).get("url") or "—"),
                ("Rate limit", f"{self.calls} calls per {self.window:.0f} s (OPS_API_RATE_LIMIT): {usage['in_use']} running, "
                               f"{usage['resting']} resting" + (f", paused {usage['blocked_for']:.0f} s more after a 429"
                                                                if usage["blocked_for"] else "")),
                ("Access token", f"{token.get('last4') or '—'}, valid {max(0, token.get('expires_at', 0) - time.time()) / 60:.0f} "
                                 "min more" if token else "none yet")]
        progress = feed.progress(self)
        done = f"{progress['offset']} of {progress['total'] if progress['total'] is not None else '?'}"
        rows.append(("Customers' full pass", f"{done} customers, at most {progress['per_minute']} a minute; "
                                            f"{progress['passes']} finished"))
        rows.append(("Records copied", ", ".join(f"{n} {kind}" for kind, n in sorted(progress["copies"].items())) or "none yet"))
        return {"state": state.split(":")[0], "rows": rows, "progress": progress,
                "problem": None if state == "ok" else f"OnPrintShop's API: {state.replace('_', ' ')}"}

    # -- statuses -----------------------------------------------------------------------------
    def statuses(self, refresh: bool = False, permits=None) -> dict[str, tuple[int, str]]:
        """{casefolded title: (id, title)} of the order statuses; cached for the deployment. With
        `permits` (a writer's, inside a state-store transaction) read but not stored."""
        cached = self._statuses
        if not refresh and cached and time.time() - cached[0] < 30:
            return cached[1]
        stored = self.store.get_setting(STATUSES_SETTING)
        if refresh or not stored or time.time() - stored["at"] > STATUS_CACHE_SECONDS:
            if permits is not None:
                found, _total = self.api.rows(records.STATUSES, "orderStatus", "orderStatus", {"limit": records.PAGE}, permits)
            else:
                found = [row for page in self.api.pages(records.STATUSES, "orderStatus", "orderStatus", {}) for row in page]
            stored = {"at": time.time(), "statuses": records.order_statuses(found)}
            if permits is None:
                self.store.set_setting(STATUSES_SETTING, stored)
        result = {title.casefold(): (sid, title) for sid, title in stored["statuses"]}
        with self._status_lock:
            self._statuses = (time.time(), result)
        return result

    def status_names(self, refresh: bool = False) -> list[str] | None:
        try:
            return [title for _sid, title in self.statuses(refresh).values()]
        except OpsError:
            stored = self.store.get_setting(STATUSES_SETTING)
            return [title for _sid, title in stored["statuses"]] if stored else None

    # -- the copy -----------------------------------------------------------------------------
    def observe_orders(self, rows: list[dict], report_new=True, conn=None) -> list[int]:
        now = self.now_local()
        customers = [r["customer"] for r in rows if isinstance(r.get("customer"), dict)]
        self.observe_customers(customers, report_new=report_new, conn=conn)
        return mirror.observe(self.store, "orders", [(records.order_data(r), records.parse_time(r.get("order_last_modified_date")))
                                                     for r in rows], now, report_new=report_new, conn=conn)

    def observe_customers(self, rows: list[dict], report_new=True, conn=None) -> list[int]:
        return mirror.observe(self.store, "customers", [(records.customer_data(r), None) for r in rows], self.now_local(),
                              report_new=report_new, conn=conn)

    def fetch_order(self, order_id: int, permits=None) -> dict | None:
        rows, _ = self.api.rows(records.ORDERS, "orders", "orders", {"orders_id": int(order_id), "limit": 1}, permits)
        return next((r for r in rows if str(r.get("orders_id")) == str(order_id)), None)

    def fetch_customer(self, customer_id: int, email: str | None = None, permits=None) -> dict | None:
        """A customer by e-mail when known (the API has no lookup by id), else through one of its orders."""
        if email:
            rows, _ = self.api.rows(records.CUSTOMERS, "customers", "customers", {"email": email, "limit": 5}, permits)
            found = next((r for r in rows if str(r.get("userid")) == str(customer_id)), None)
            if found:
                return found
        rows, _ = self.api.rows(records.ORDERS, "orders", "orders", {"customer_id": int(customer_id), "limit": 1}, permits)
        customer = rows[0].get("customer") if rows else None
        return customer if isinstance(customer, dict) and str(customer.get("userid")) == str(customer_id) else None

    def _read(self, kind: str, ids, fetch: bool = True) -> dict:
        ids = {int(i) for i in ids}
        rows = mirror.read(self.store, kind, ids)
        missing = ids - set(rows)
        if missing and fetch:
            for ops_id in sorted(missing):
                if kind == "orders":
                    found = self.fetch_order(ops_id)
                    if found:
                        self.observe_orders([found], report_new=False)
                else:
                    found = self.fetch_customer(ops_id)
                    if found:
                        self.observe_customers([found], report_new=False)
            rows.update(mirror.read(self.store, kind, missing))
        return rows

    def _reading(self, work):
        try:
            return work()
        except OpsError:
            raise
        except Exception as exc:  # the state store's copy: the same answer as an unreachable store
            raise OpsUnavailable(f"OnPrintShop's records could not be read ({exc.__class__.__name__})") from exc

    # -- the port: reads ----------------------------------------------------------------------
    def customers(self, ids):
        return self._reading(lambda: {i: records.customer_record(mirror.data_of(r)) for i, r in self._read("customers", ids).items()})

    def orders(self, ids):
        return self._reading(lambda: {i: records.order_record(mirror.data_of(r), r.modified, r.first_seen)
                                      for i, r in self._read("orders", ids).items()})

    def existing_ids(self, kind, ids):
        def work():
            if kind == "orders":  # asked by id: read fresh
                found = [self.fetch_order(i) for i in sorted({int(i) for i in ids})]
                self.observe_orders([f for f in found if f], report_new=False)
            return sorted(self._read(kind, ids))
        return self._reading(work)

    def all_ids(self, kind, since=None, patient: bool = False):
        patience = LISTING_PATIENCE if patient else 0

        def work():
            ids: set[int] = set()
            if kind == "orders":
                day = since.date().isoformat() if since else records.EVERYTHING_SINCE
                for page in self.api.pages(records.ORDERS, "orders", "orders", {"from_date": day}, patient=patience):
                    self.observe_orders(page, report_new=False)
                    ids |= {int(r["orders_id"]) for r in page if since is None
                            or (records.parse_time(r.get("order_last_modified_date")) or since) >= since}
            else:  # customers have no modified date: `since` is their registration
                day = since.date().isoformat() if since else records.EVERYTHING_SINCE
                for page in self.api.pages(records.CUSTOMERS, "customers", "customers",
                                           {"date_type": "registration", "from_date": day}, patient=patience):
                    self.observe_customers(page, report_new=False)
                    ids |= {int(r["userid"]) for r in page if r.get("userid")}
            return sorted(ids)
        return self._reading(work)

    def customer_ids_of_orders(self, order_ids):
        return self._reading(lambda: {i: int(r.customer_id) for i, r in self._read("orders", order_ids).items()
                                      if r.customer_id is not None})

    def changed_since(self, kind, after, until=None, limit: int = 1000):
        return self._reading(lambda: mirror.changed_since(self.store, kind, after, until, limit))

    def refresh_changes(self, kind: str) -> None:
        """Read what changed in OnPrintShop into the copy (orders by date, customers by the three ways)."""
        changed = feed.orders(self) if kind == "orders" else feed.customers(self)
        if changed:
            log.info("OnPrintShop's API: %d changed %s", changed, kind)

    # -- the port: writes ---------------------------------------------------------------------
    def writer(self, connect_now: bool = False, write_email: bool = False, changes: int = 1,
               ample: bool = False) -> ApiWriter:
        return ApiWriter(self, write_email, changes, ample)
