"""Connecting a hosted store: check an API client (a token, then the order statuses) and keep it.

A client that does not work is not saved, so the one in use stays as it was."""
from __future__ import annotations

import time

from ...errors import ConfigError
from ...results import Result
from ...settings import rate_limit
from ...state.limiter import Limiter
from ..port import OpsError
from . import client, credentials, records
from .token import TokenCache

STATUSES_SETTING = "ops_api.statuses"  # {"at", "statuses": [[id, title], …]}: shared by every process


def configure(rt, *, url: str, client_id: str, client_secret: str) -> Result:
    """Check the client against OnPrintShop and save it; the message is OnPrintShop's reason on failure."""
    try:
        creds = credentials.check(url, client_id, client_secret)
    except ConfigError as exc:
        return Result(False, str(exc), "refused: " + str(exc).split(":")[0])
    calls, window = rate_limit(rt.config.get("OPS_API_RATE_LIMIT") or "120 per minute")
    limiter = Limiter(rt.store, "ops_api", calls, cooldown=window + 1.0, hold=client.HOLD_SECONDS)
    api = client.GraphQL(rt.config, rt.store, rt.vault, limiter, lambda mint: TokenCache(rt.store, rt.vault, mint), window,
                         fixed=creds)
    try:
        rows = [row for page in api.pages(records.STATUSES, "orderStatus", "orderStatus", {}) for row in page]
    except OpsError as exc:
        return Result(False, str(exc), f"{creds.url}: refused")
    statuses = records.order_statuses(rows)
    credentials.save(rt.store, rt.vault, creds)
    rt.store.set_setting(STATUSES_SETTING, {"at": time.time(), "statuses": statuses})
    message = f"connected {creds.url} {len(statuses)} statuses"
    overridden = credentials.shown(rt.config, rt.store)["from_environment"]
    if overridden:
        message += f" (saved; {', '.join(overridden)} from the environment win over it)"
    return Result(True, message, f"{creds.url}: connected")
