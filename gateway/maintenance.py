"""Retention: the hourly purge of what the gateway no longer needs to keep.

Finished inbox rows (gateway.inbound.inbox.purge) and finished queue jobs (gateway.outbound.queue
.purge_finished) older than GATEWAY_RETENTION_DAYS, and the events API's remembered webhook ids
(gateway.outbound.events.purge_seen_ids), and the admin audit trail (gateway.admin.audit.purge).
Work not yet done is never purged: pending inbox rows, pending jobs, and Notification API ids
still waiting for Zoho (gw_notify_pending) stay until they are applied. One process of the deployment purges at a time (a lease). A part whose
purge function is not there is skipped, and said so once.
"""
from __future__ import annotations

import importlib
import logging
import time

from .store import new_holder_id

log = logging.getLogger("gateway.maintenance")

INTERVAL_SECONDS = 3600
LEASE = "maintenance.purge"
LAST_PURGE_SETTING = "maintenance.last_purge"  # {at, counts}

# (what, module, candidate function names): each function takes (rt, older_than_epoch) -> int.
PARTS = (
    ("inbox", "gateway.inbound.inbox", ("purge",)),
    ("jobs", "gateway.outbound.queue", ("purge_finished",)),
    ("event_ids", "gateway.outbound.events", ("purge_seen_ids", "purge_webhook_ids", "purge_seen")),
    ("audit", "gateway.admin.audit", ("purge",)),
)

_said_missing: set[str] = set()


def _purge_function(module_name: str, names):
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    for name in names:
        func = getattr(module, name, None)
        if callable(func):
            return func
    return None


def purge(rt, now: float | None = None) -> dict[str, int]:
    """Purge every part once; returns how many rows each dropped (parts not available are absent)."""
    now = time.time() if now is None else now
    older_than = now - rt.config["GATEWAY_RETENTION_DAYS"] * 86400
    counts: dict[str, int] = {}
    for what, module_name, names in PARTS:
        func = _purge_function(module_name, names)
        if func is None:
            if what not in _said_missing:
                _said_missing.add(what)
                log.info("retention: no purge for %s (%s) in this build; skipped", what, module_name)
            continue
        try:
            counts[what] = int(func(rt, older_than) or 0)
        except Exception:  # one part failing must not keep the others from being purged
            log.exception("retention: purging %s failed", what)
    rt.store.set_setting(LAST_PURGE_SETTING, {"at": now, "counts": counts})
    if any(counts.values()):
        log.info("retention: purged %s", ", ".join(f"{n} {what}" for what, n in counts.items() if n))
    return counts


def run(rt, stop) -> None:
    """Hourly, for the whole deployment: whoever holds the lease purges."""
    holder = new_holder_id()
    while not stop.is_set():
        try:
            last = (rt.store.get_setting(LAST_PURGE_SETTING) or {}).get("at") or 0
            if time.time() - last >= INTERVAL_SECONDS and rt.store.try_lease(LEASE, holder, INTERVAL_SECONDS / 2):
                try:
                    purge(rt)
                finally:
                    rt.store.release_lease(LEASE, holder)
        except Exception:
            log.exception("retention purge failed; trying again later")
        stop.wait(300)
