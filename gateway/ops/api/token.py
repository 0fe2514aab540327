"""One OnPrintShop API access token for the whole deployment, minted once per expiry.

Kept in the state store; one caller mints (a lock, a lease) while the others wait and read it
(docs/ops-api.md, "Token")."""
from __future__ import annotations

import base64
import json
import logging
import math
import threading
import time

from ...state import new_holder_id
from ...vault import last4
from ..port import OpsUnavailable

log = logging.getLogger("gateway.ops.api")

SETTING = "ops_api.token"          # {"fingerprint", "expires_at", "minted_at", "last4"}
SECRET = "ops_api.access_token"
LEASE = "ops_api.token_mint"
LEASE_SECONDS = 120.0             # longer than a mint can take: a permit's wait (60 s) and the call's timeouts (35 s)
WAIT_SECONDS = 70.0
POLL_SECONDS = 0.05
MAX_TTL = 86400.0
FALLBACK_TTL = 3300.0              # OnPrintShop's answer gives no lifetime: assume 55 minutes
REJECTED_COOLDOWN = 60.0           # a token minted after a 401 and rejected again this soon: the client is at fault


def refresh_margin(lifetime: float) -> float:
    """Mint this long before expiry: 10 % of the lifetime, between 5 and 60 seconds."""
    return min(60.0, max(5.0, 0.1 * lifetime))


def lifetime_of(answer: dict, now: float) -> float:
    """Seconds the token is valid: `expires_in`, else `expires_at`/`expiry`, else a JWT `exp`, else
    FALLBACK_TTL; never more than a day (a time in milliseconds would be centuries)."""
    return min(_lifetime(answer, now), MAX_TTL)


def _lifetime(answer: dict, now: float) -> float:
    expires_in = _number(answer.get("expires_in"))
    if expires_in is not None and expires_in > 0:
        return expires_in
    for key in ("expires_at", "expiry"):
        value = _number(answer.get(key))
        if value is not None and value > now:
            return value - now
    parts = str(answer.get("access_token") or "").split(".")
    if len(parts) == 3:
        try:
            claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
            if isinstance(claims.get("exp"), (int, float)) and claims["exp"] > now:
                return float(claims["exp"]) - now
        except (ValueError, TypeError, AttributeError):
            pass
    return FALLBACK_TTL


def _number(value) -> float | None:
    """A number, or one written as text ("3600", as some OAuth servers send it)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)  # text too, spaces around it allowed
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


class TokenCache:
    """`get(creds)` the deployment's token; `rejected(creds, token)` after OnPrintShop refused it.
    `mint(creds)` is the one call that asks OnPrintShop for a token (made by the client)."""

    def __init__(self, store, vault, mint, clock=time.time):
        self.store = store
        self.vault = vault
        self.mint = mint
        self.clock = clock
        self._lock = threading.Lock()
        self.minted = 0  # mints this process made (tests, the page)

    def get(self, creds) -> str:
        info, token = self._read()
        if self._usable(info, token, creds, stale=None):
            return token
        return self._renew(creds, stale=token, rejected=False)

    def rejected(self, creds, token: str) -> str:
        """A new token unless another caller already replaced `token`; never a mint loop."""
        return self._renew(creds, stale=token, rejected=True)

    def status(self) -> dict:
        return self.store.get_setting(SETTING, None) or {}

    # -- internals ------------------------------------------------------------------------------
    def _read(self) -> tuple[dict, str | None]:
        with self.store.engine.connect() as conn:
            return self.store.get_setting(SETTING, None, conn=conn) or {}, self.vault.get(conn, SECRET)

    def _usable(self, info: dict, token: str | None, creds, stale: str | None) -> bool:
        if not token or token == stale or info.get("fingerprint") != creds.fingerprint:
            return False
        lifetime = float(info.get("expires_at", 0)) - float(info.get("minted_at", 0))
        return float(info.get("expires_at", 0)) - refresh_margin(lifetime) > self.clock()

    def _renew(self, creds, *, stale: str | None, rejected: bool) -> str:
        deadline = time.monotonic() + WAIT_SECONDS
        if not self._lock.acquire(timeout=WAIT_SECONDS):
            raise OpsUnavailable("waited too long for another thread getting an OnPrintShop API token")
        try:
            holder = new_holder_id()
            while True:
                info, token = self._read()
                if self._usable(info, token, creds, stale):
                    return token  # someone minted while we waited
                if self.store.try_lease(LEASE, holder, LEASE_SECONDS):
                    try:
                        info, token = self._read()  # another process may have finished just before
                        if self._usable(info, token, creds, stale):
                            return token
                        if rejected and token == stale and info.get("fingerprint") == creds.fingerprint \
                                and info.get("after_rejection"):
                            age = self.clock() - float(info.get("minted_at", 0))
                            if age < REJECTED_COOLDOWN:
                                raise OpsUnavailable(
                                    f"OnPrintShop rejected an API token minted {age:.0f} s ago: check the API client id "
                                    "and secret (Connect to OnPrintShop); trying again in a minute")
                        return self._mint_and_store(creds, after_rejection=rejected)
                    finally:
                        self.store.release_lease(LEASE, holder)
                if time.monotonic() > deadline:
                    raise OpsUnavailable("another process has been getting the OnPrintShop API token for too long")
                time.sleep(POLL_SECONDS)
        finally:
            self._lock.release()

    def _mint_and_store(self, creds, after_rejection: bool) -> str:
        now = self.clock()
        answer = self.mint(creds)
        token = str(answer["access_token"])
        lifetime = lifetime_of(answer, now)
        self.minted += 1
        with self.store.immediate() as conn:
            self.vault.put(conn, SECRET, token)
            self.store.set_setting(SETTING, {"fingerprint": creds.fingerprint, "minted_at": now, "expires_at": now + lifetime,
                                             "last4": last4(token), "after_rejection": after_rejection}, conn=conn)
        log.info("OnPrintShop API token minted (%s), valid %.0f s", last4(token), lifetime)
        return token
