"""Finding what changed in a hosted store, for the change poller.

Orders by last-modified day, customers by registration day, with their orders, and by a slow,
paced, resumable full pass (docs/ops-api.md, "Finding changes")."""
from __future__ import annotations

import datetime as dt
import logging
import time

from . import mirror, records

log = logging.getLogger("gateway.ops.api")

ORDERS_SINCE = "ops_api.orders_since"          # {"day": "YYYY-MM-DD"}: the next pass reads from it
CUSTOMERS_SINCE = "ops_api.customers_since"    # {"day": …}: registrations
STARTED = "ops_api.feed_started"               # {"day": …}: customers registered before are not "new"
FULL_PASS = "ops_api.full_pass"                # {"offset", "total", "started_at", "finished_at", "passes", "next_page_at"}
# Each pass reads again from the day before the last one's: a store whose OPS_TIMEZONE is set wrong
# (UTC, the default, for a store in America) has days that end later than the gateway thinks.
OVERLAP = dt.timedelta(days=1, minutes=10)
FULL_PASS_SHARE = 0.1        # of the rate limit, at most, for the full pass
FULL_PASS_REST = 3600.0      # between two full passes
FULL_PASS_PAGES_PER_ROUND = 10


def _day(store, name: str) -> str | None:
    value = store.get_setting(name)
    return value.get("day") if value else None


def _start(store, name: str, now: dt.datetime) -> bool:
    """A kind's first round: it starts from the day before (what exists is pushed with `push … --all`)."""
    if _day(store, name):
        return False
    first = {"day": (now - OVERLAP).date().isoformat()}
    if not _day(store, STARTED):
        store.set_setting(STARTED, first)
    store.set_setting(name, first)
    return True


def orders(backend) -> int:
    """Read the orders modified since the last pass's day (less the overlap); returns how many changed."""
    store, now = backend.store, backend.now_local()
    if _start(store, ORDERS_SINCE, now):
        return 0
    changed = 0
    for page in backend.api.pages(records.ORDERS, "orders", "orders", {"from_date": _day(store, ORDERS_SINCE)}):
        changed += len(backend.observe_orders(page, report_new=True))
    store.set_setting(ORDERS_SINCE, {"day": (now - OVERLAP).date().isoformat()})
    return changed


def customers(backend) -> int:
    """New registrations since the last pass's day, then a slice of the slow full pass."""
    store, now = backend.store, backend.now_local()
    if _start(store, CUSTOMERS_SINCE, now):
        return 0
    variables = {"date_type": "registration", "from_date": _day(store, CUSTOMERS_SINCE)}
    changed = sum(len(backend.observe_customers(page, report_new=True))
                  for page in backend.api.pages(records.CUSTOMERS, "customers", "customers", variables))
    store.set_setting(CUSTOMERS_SINCE, {"day": (now - OVERLAP).date().isoformat()})
    return changed + full_pass_step(backend)


def full_pass_step(backend) -> int:
    """A few pages of the full pass over every customer, no faster than its share of the rate limit."""
    store = backend.store
    state = store.get_setting(FULL_PASS) or {"offset": 0, "passes": 0, "next_page_at": 0.0}
    gap = backend.window / max(1.0, backend.calls * FULL_PASS_SHARE)  # seconds between two pages
    started = _day(store, STARTED)
    changed = pages = 0
    while time.time() >= float(state.get("next_page_at") or 0) and pages < FULL_PASS_PAGES_PER_ROUND:
        if not state.get("offset"):
            state.update(started_at=time.time(), finished_at=None)
        rows, total = backend.api.rows(records.CUSTOMERS, "customers", "customers", {
            "date_type": "registration", "from_date": records.EVERYTHING_SINCE, "limit": records.PAGE,
            "offset": int(state.get("offset") or 0)})
        # Customers registered before the feed started are pushed with `push customers --all`, not found here.
        changed += len(backend.observe_customers(rows, report_new=lambda data: str(data.get("registered") or "") >= started))
        pages += 1
        state["offset"] = int(state.get("offset") or 0) + len(rows)
        state["total"] = total
        state["next_page_at"] = time.time() + gap
        # The end is the total when OnPrintShop gives one (a server may cap pages below 250), else a short page.
        if not rows or (state["offset"] >= total if total is not None else len(rows) < records.PAGE):
            state.update(offset=0, finished_at=time.time(), passes=int(state.get("passes") or 0) + 1,
                         next_page_at=time.time() + FULL_PASS_REST)
            log.info("full pass over OnPrintShop's customers finished: %s customers", state.get("total"))
        store.set_setting(FULL_PASS, state)
    return changed


def progress(backend) -> dict:
    """The full pass as the status page shows it: offset, total, pace (customers a minute), times."""
    state = backend.store.get_setting(FULL_PASS) or {}
    gap = backend.window / max(1.0, backend.calls * FULL_PASS_SHARE)
    return {"offset": int(state.get("offset") or 0), "total": state.get("total"), "passes": int(state.get("passes") or 0),
            "started_at": state.get("started_at"), "finished_at": state.get("finished_at"),
            "next_page_at": state.get("next_page_at"), "per_minute": round(60.0 / gap * records.PAGE),
            "copies": mirror.counts(backend.store)}
