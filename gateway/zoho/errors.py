"""The Zoho side's error types, in words a person can act on: callers catch what they can act on
(the queue pauses on some, retries on `Unavailable`) and show `str(exc)` to people."""
from __future__ import annotations

import email.utils
import time


class ZohoError(Exception):
    """Base: a Zoho request failed. `code` is Zoho's own error code when it gave one."""

    def __init__(self, message: str, *, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.code = code

    def __str__(self) -> str:
        return self.message


class OAuthRejected(ZohoError):
    """Zoho's accounts server refused a token request (wrong client, used grant token, ...)."""


class ReauthorizationNeeded(ZohoError):
    """The refresh token no longer works (revoked, or pushed out by 20 newer ones): connect again."""


class NotConfigured(ZohoError):
    """No Zoho connection has been saved yet."""

    def __init__(self, message: str = "Zoho is not connected yet: save the Zoho settings on the admin page "
                 "or run `flask --app wsgi configure`", **kwargs):
        super().__init__(message, **kwargs)


class Throttled(ZohoError):
    """Zoho asked us to slow down (HTTP 429, or the accounts server's "too many requests");
    `retry_after`: seconds to wait when known, else None (back off yourself)."""

    def __init__(self, message: str, *, retry_after: float | None = None, code: str | None = None):
        super().__init__(message, code=code)
        self.retry_after = retry_after


class Unavailable(ZohoError):
    """Zoho could not be reached or failed on its side (timeout, network error, HTTP 5xx)."""


class BudgetExhausted(ZohoError):
    """The deployment's own daily Zoho call budget is spent (raised by gateway.zoho.gate)."""


class ApiRefused(ZohoError):
    """The CRM API refused the request's authorization itself (e.g. a scope mismatch), not the data."""

    def __init__(self, message: str, *, status: int, code: str | None = None):
        super().__init__(message, code=code)
        self.status = status


def parse_retry_after(value) -> float | None:
    """Seconds to wait from a Retry-After header (seconds or an HTTP date); None when absent or unreadable."""
    if value in (None, ""):
        return None
    text = str(value).strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())
