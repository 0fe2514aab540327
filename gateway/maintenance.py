"""Retention: the hourly purge, by one process at a time, of what the gateway no longer needs;
work not yet done is never purged (docs/operations.md, "Retention")."""
from __future__ import annotations

import logging
import time

from . import audit
from .inbound import reports
from .outbound import events, queue
from .state.leases import leased_loop

log = logging.getLogger("gateway.maintenance")

INTERVAL_SECONDS = 3600
LEASE = "maintenance.purge"
LAST_PURGE_SETTING = "maintenance.last_purge"  # {at, counts}

# (what, function(rt, older_than_epoch) -> rows dropped)
PARTS = (
    ("inbox", reports.purge),
    ("jobs", queue.purge_finished),
    ("event_ids", events.purge_seen_ids),
    ("audit", audit.purge),
    ("login_failures", audit.purge_login_failures),
)


def purge(rt, now: float | None = None) -> dict[str, int]:
    """Purge every part once; returns how many rows each dropped."""
    now = time.time() if now is None else now
    older_than = now - rt.config["GATEWAY_RETENTION_DAYS"] * 86400
    counts: dict[str, int] = {}
    for what, func in PARTS:
        try:
            counts[what] = int(func(rt, older_than) or 0)
        except Exception:  # one part failing must not keep the others from being purged
            log.exception("retention: purging %s failed", what)
    rt.store.set_setting(LAST_PURGE_SETTING, {"at": now, "counts": counts})
    if any(counts.values()):
        log.info("retention: purged %s", ", ".join(f"{n} {what}" for what, n in counts.items() if n))
    return counts


def _due(rt) -> bool:
    last = (rt.store.get_setting(LAST_PURGE_SETTING) or {}).get("at") or 0
    return time.time() - last >= INTERVAL_SECONDS


def run(rt, stop) -> None:
    """Hourly, for the whole deployment: whoever holds the lease purges."""
    leased_loop(rt.store, stop, LEASE, lambda: purge(rt), every=300, lease_seconds=INTERVAL_SECONDS / 2,
                wanted=lambda: _due(rt), log=log, what="retention purge")
