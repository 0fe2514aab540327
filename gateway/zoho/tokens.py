"""One Zoho access token for the whole deployment, in the state store, refreshed once per expiry
by one thread of one process (a lock and the lease `zoho.token_refresh`); throttling, failures and
the rejected-token cooldown: docs/zoho.md, "Keeping the token fresh"."""
from __future__ import annotations

import logging
import threading
import time

from ..state import new_holder_id
from ..vault import last4
from . import connection, oauth
from .datacenters import accounts_url
from .errors import ApiRefused, NotConfigured, OAuthRejected, ReauthorizationNeeded, Throttled, Unavailable, ZohoError

log = logging.getLogger("gateway.zoho.tokens")

LEASE_NAME = "zoho.token_refresh"
REFRESH_MARGIN = 300.0      # refresh this long before expiry ("a few minutes")
STILL_USABLE = 30.0         # a token with this much life left is used when a refresh cannot happen now
LEASE_SECONDS = oauth.TIMEOUT + 15.0  # outlives one refresh call; a crashed holder's lease lapses
WAIT_SECONDS = LEASE_SECONDS + 10.0   # how long a caller waits for another refresher before giving up
POLL_SECONDS = 0.05
THROTTLE_BACKOFF = 60.0     # first wait after the accounts throttle; doubles, at most 10 minutes
THROTTLE_BACKOFF_MAX = 600.0
NETWORK_BACKOFF = 5.0       # a failed network call is not repeated by every waiting thread
# A rejected token this young is not refreshed again: at most 5 refreshes per 10 minutes for
# rejected tokens, half of what Zoho allows, leaving room for the regular ones.
REJECTED_REFRESH_COOLDOWN = 120.0


class TokenService:
    """Hands out the deployment's Zoho access token; `invalidate()` after a 401 INVALID_TOKEN."""

    def __init__(self, store, vault, config, *, clock=time.time):
        self.store = store
        self.vault = vault
        self.config = config
        self.clock = clock
        self._lock = threading.Lock()
        self.refreshes = 0  # refresh calls this process made (for tests and the page)

    # -- the interface ------------------------------------------------------------------------
    def access_token(self) -> str:
        """The current access token, refreshed first when it expires within a few minutes."""
        info, token = self._read()
        if token and info.get("access_expires_at", 0) - REFRESH_MARGIN > self.clock():
            return token
        return self._refresh(stale=token)

    def invalidate(self, failed_token: str) -> str:
        """Zoho rejected `failed_token`: a new token, refreshing only if it is still the stored one;
        ApiRefused, refreshing nothing, within REJECTED_REFRESH_COOLDOWN of the last refresh."""
        return self._refresh(stale=failed_token, rejected=True)

    def api_domain(self) -> tuple[str | None, str | None]:
        """(data center, API domain) of the stored connection, for the client's base URL."""
        info = connection.load(self.store)
        if info is None:
            raise NotConfigured()
        return info.get("data_center"), info.get("api_domain")

    # -- internals ----------------------------------------------------------------------------
    def _read(self) -> tuple[dict, str | None]:
        info, token = connection.load_with_access_token(self.store, self.vault)
        if info is None:
            raise NotConfigured()
        if info.get("state") == connection.NEEDS_REAUTHORIZATION:
            raise ReauthorizationNeeded(
                info.get("reason") or "the Zoho connection needs re-authorization: save the Zoho settings again with a new grant token",
                code="invalid_code",
            )
        return info, token

    def _fresh(self, info: dict, token: str | None, stale: str | None, margin: float = REFRESH_MARGIN) -> bool:
        return bool(token) and token != stale and info.get("access_expires_at", 0) - margin > self.clock()

    def _refresh(self, *, stale: str | None, rejected: bool = False) -> str:
        deadline = time.monotonic() + WAIT_SECONDS
        if not self._lock.acquire(timeout=WAIT_SECONDS):
            raise Unavailable("timeout: waited too long for another thread refreshing the Zoho access token", code="timeout")
        try:
            holder = new_holder_id()
            while True:
                info, token = self._read()
                if self._fresh(info, token, stale, margin=0 if rejected else REFRESH_MARGIN):
                    return token  # someone refreshed while we waited
                if rejected:
                    self._check_cooldown(info)
                blocked = (info.get("refresh_blocked_until") or 0) - self.clock()
                if blocked > 0:
                    return self._fallback(info, token, rejected, self._blocked_error(info, blocked))
                if self._try_lease(holder):
                    try:
                        info, token = self._read()  # another process may have finished just before
                        if self._fresh(info, token, stale, margin=0 if rejected else REFRESH_MARGIN):
                            return token
                        if rejected:
                            self._check_cooldown(info)
                        try:
                            return self._do_refresh(info)
                        except (ReauthorizationNeeded, NotConfigured):
                            raise
                        except ZohoError as exc:  # throttled, unreachable, an odd answer: maybe later
                            return self._fallback(info, token, rejected, exc)
                    finally:
                        self.store.release_lease(LEASE_NAME, holder)
                if time.monotonic() > deadline:
                    raise Unavailable("timeout: another process has been refreshing the Zoho access token for too long",
                                      code="timeout")
                time.sleep(POLL_SECONDS)
        finally:
            self._lock.release()

    def _check_cooldown(self, info: dict) -> None:
        """ApiRefused for a rejected token refreshed moments ago; only our own refreshes count, not a
        new connection's grant (one refresh may then still test the refresh token)."""
        refreshed_at = info.get("token_refreshed_at")
        if refreshed_at is None:
            return
        age = max(0.0, self.clock() - float(refreshed_at))
        if age >= REJECTED_REFRESH_COOLDOWN:
            return
        message = (f"token refresh skipped: Zoho rejected (HTTP 401 INVALID_TOKEN) an access token refreshed {age:.0f} s ago, "
                   f"and a new one is asked for at most every {REJECTED_REFRESH_COOLDOWN:.0f} s (Zoho allows 10 refreshes "
                   "per 10 minutes); check the Zoho data center and ZOHO_API_URL, then save the Zoho settings again")
        connection.record_error(self.store, message)
        log.warning("zoho %s", message)
        raise ApiRefused(message, status=401, code="INVALID_TOKEN")

    def _blocked_error(self, info: dict, blocked: float) -> ZohoError:
        """Why no refresh is tried now: the same type as the failure that started the pause."""
        cause = (self.store.get_setting(connection.LAST_ERROR_SETTING, None) or {}).get("message", "a failure")
        message = f"Zoho token refresh is paused for {blocked:.0f} s after: {cause}"
        if info.get("refresh_blocked_reason") == "unavailable":
            return Unavailable(message, code="backoff")
        return Throttled(message, retry_after=blocked, code="backoff")

    def _pause(self, generation: str, message: str) -> None:
        """A short pause after a failed refresh, so the callers waiting behind it do not each repeat it."""
        connection.update_fields(self.store, generation, {
            "refresh_blocked_until": self.clock() + NETWORK_BACKOFF, "refresh_blocked_reason": "unavailable"})
        connection.record_error(self.store, message)
        log.warning("zoho %s", message)

    def _try_lease(self, holder: str) -> bool:
        # A lost race (a deadlock victim on MySQL included) is simply False: wait and re-read.
        return self.store.try_lease(LEASE_NAME, holder, LEASE_SECONDS)

    def _fallback(self, info: dict, token: str | None, rejected: bool, exc: ZohoError) -> str:
        """A refresh cannot happen now: keep using a token Zoho has not rejected and that has some life left."""
        if token and not rejected and info.get("access_expires_at", 0) - STILL_USABLE > self.clock():
            return token
        raise exc

    def _do_refresh(self, info: dict) -> str:
        generation = info["generation"]
        _, secrets = connection.refresh_credentials(self.store, self.vault)
        if not secrets.get("refresh_token") or not secrets.get("client_id") or not secrets.get("client_secret"):
            reason = "the stored Zoho credentials are incomplete: save the Zoho settings again with a new grant token"
            connection.update_fields(self.store, generation, {"state": connection.NEEDS_REAUTHORIZATION, "reason": reason})
            raise ReauthorizationNeeded(reason)
        url = accounts_url(self.config, info["data_center"], info.get("accounts_server"))
        self.refreshes += 1
        try:
            answer = oauth.refresh(url, client_id=secrets["client_id"], client_secret=secrets["client_secret"],
                                   refresh_token=secrets["refresh_token"])
        except OAuthRejected as exc:
            if exc.code in ("invalid_code", "invalid_client", "invalid_client_secret"):
                connection.update_fields(self.store, generation, {"state": connection.NEEDS_REAUTHORIZATION, "reason": str(exc)})
                connection.record_error(self.store, f"token refresh failed: {exc}")
                log.error("zoho connection needs re-authorization: %s", exc)
                raise ReauthorizationNeeded(str(exc), code=exc.code) from None
            self._pause(generation, f"token refresh failed: {exc}")
            raise
        except Throttled as exc:
            failures = int(info.get("refresh_failures") or 0) + 1
            wait = exc.retry_after or min(THROTTLE_BACKOFF * 2 ** (failures - 1), THROTTLE_BACKOFF_MAX)
            connection.update_fields(self.store, generation, {
                "refresh_blocked_until": self.clock() + wait, "refresh_blocked_reason": "throttled", "refresh_failures": failures})
            connection.record_error(self.store, f"token refresh throttled: {exc}")
            log.warning("zoho token refresh throttled; next try in %.0f s", wait)
            raise Throttled(str(exc), retry_after=wait, code=exc.code) from None
        except ZohoError as exc:  # Unavailable, or an answer the gateway does not understand
            self._pause(generation, f"token refresh failed: {exc}")
            raise
        now = self.clock()
        stored = connection.update_fields(self.store, generation, {
            "access_expires_at": now + answer.expires_in,
            "last_refresh_at": now,
            "token_refreshed_at": now,  # the rejected-token cooldown's clock (a grant does not set it)
            "access_token_last4": last4(answer.access_token),
            "refresh_blocked_until": None,
            "refresh_blocked_reason": None,
            "refresh_failures": 0,
            **({"api_domain": answer.api_domain} if answer.api_domain else {}),
        }, vault=self.vault, access_token=answer.access_token)
        if not stored:
            # The connection was replaced while we refreshed: its own token is the one to use.
            info, token = self._read()
            if token:
                return token
            raise NotConfigured()
        error = self.store.get_setting(connection.LAST_ERROR_SETTING, None) or {}
        if str(error.get("message", "")).startswith("token refresh"):
            connection.record_error(self.store, None)  # a refresh problem that is over now
        log.info("zoho access token refreshed (…%s), valid %.0f s", answer.access_token[-4:], answer.expires_in)
        return answer.access_token
