"""Zoho OAuth 2.0 as plain functions (no state, no storage): exchange, refresh, revoke, the auth URL.
Zoho answers token errors in the body, often with HTTP 200, so every body is read; messages name
Zoho's error code and the host, never a value sent."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

import requests

from .errors import OAuthRejected, Throttled, Unavailable, ZohoError, parse_retry_after

log = logging.getLogger("gateway.zoho.oauth")

# Records (pushes, reads) and the Notification API's watch (ZohoCRM.notifications.*, per
# Zoho's "Enable Notifications" page): a grant without the second cannot switch that mode on.
SCOPE = "ZohoCRM.modules.ALL,ZohoCRM.notifications.ALL"
TIMEOUT = 15.0  # seconds; a grant token lives only minutes, an answer slower than this is a failure

# What to do about each error Zoho's token endpoint names (the code is shown before the words).
GRANT_ERRORS = {
    "invalid_code": "the grant token has expired or was already used; make a new one",
    "invalid_client": "Zoho does not know this Client ID and Client Secret at the chosen data center's accounts "
                      "server; check both, and choose the data center where the client was created",
    "invalid_client_secret": "the Client Secret is wrong; copy it again from Zoho's API console",
    "invalid_redirect_uri": "the redirect URI does not match the one registered for this client in Zoho's API console",
    "unauthorized_client": "this client may not use this grant type; use a Self Client or a server-based client",
}
REFRESH_ERRORS = {
    "invalid_code": "Zoho no longer accepts the stored refresh token (it was revoked, or pushed out by 20 newer "
                    "ones); make a new grant token and save the Zoho settings again",
    "invalid_client": "Zoho no longer accepts the stored Client ID and Client Secret (the client was deleted or its "
                      "secret changed); save the Zoho settings again with the current ones",
}
THROTTLE_MESSAGE = ("Access Denied: Zoho's accounts server says too many requests were made in a short time; "
                    "wait a few minutes and try again")


@dataclass(frozen=True)
class TokenAnswer:
    access_token: str
    expires_in: float
    api_domain: str | None
    refresh_token: str | None = None
    token_type: str | None = None


def _host(url: str) -> str:
    return urlsplit(url).netloc or url


def _is_throttle(body: dict) -> bool:
    error = str(body.get("error", "")).lower()
    description = str(body.get("error_description", "")).lower()
    return error == "access denied" or "too many requests" in description


def interpret(status: int, body: object, *, purpose: str, headers=None) -> TokenAnswer:
    """Classify one answer of the token endpoint (pure); `purpose` "grant" or "refresh" (a code means
    different things for each). Returns the TokenAnswer, or raises Throttled, OAuthRejected, Unavailable."""
    if isinstance(body, dict):
        if _is_throttle(body):
            raise Throttled(THROTTLE_MESSAGE, retry_after=_retry_after(headers), code="Access Denied")
        error = body.get("error")
        if error:
            error = str(error)
            known = (GRANT_ERRORS if purpose == "grant" else {**GRANT_ERRORS, **REFRESH_ERRORS}).get(error)
            if known is None:
                detail = str(body.get("error_description") or "").strip()
                known = f"Zoho refused the token request{': ' + detail[:200] if detail else ''}"
            raise OAuthRejected(f"{error}: {known}", code=error)
        if body.get("access_token"):
            try:
                expires_in = float(body.get("expires_in") or 3600)
            except (TypeError, ValueError):
                expires_in = 3600.0
            return TokenAnswer(
                access_token=str(body["access_token"]),
                expires_in=expires_in,
                api_domain=(str(body["api_domain"]).rstrip("/") if body.get("api_domain") else None),
                refresh_token=(str(body["refresh_token"]) if body.get("refresh_token") else None),
                token_type=body.get("token_type"),
            )
    if status == 429:
        raise Throttled(THROTTLE_MESSAGE, retry_after=_retry_after(headers), code="429")
    if status >= 500:
        raise Unavailable(f"Zoho's accounts server failed on its side (HTTP {status}); try again in a few minutes",
                          code=str(status))
    raise ZohoError(f"Zoho's accounts server gave an answer the gateway does not understand (HTTP {status}); "
                    "check the data center and ZOHO_ACCOUNTS_URL", code=str(status))


def _retry_after(headers) -> float | None:
    if not headers:
        return None
    return parse_retry_after(headers.get("Retry-After"))


def _post(url: str, *, data=None, params=None, timeout: float, session=None):
    http = session or requests
    try:
        response = http.post(url, data=data, params=params, timeout=timeout)
    except requests.Timeout:
        raise Unavailable(f"timeout: no answer from Zoho's accounts server {_host(url)} within {timeout:g} s; "
                          "check the network and try again", code="timeout") from None
    except requests.RequestException as exc:
        raise Unavailable(f"network error: could not reach Zoho's accounts server {_host(url)} "
                          f"({exc.__class__.__name__}); check the data center and the network", code="network") from None
    try:
        body = response.json()
    except ValueError:
        body = None
    return response, body


def exchange_grant(accounts_url: str, *, client_id: str, client_secret: str, code: str,
                   redirect_uri: str | None = None, timeout: float = TIMEOUT, session=None) -> TokenAnswer:
    """Trade a grant token (single use, minutes old) for an access token and a refresh token."""
    data = {"grant_type": "authorization_code", "client_id": client_id, "client_secret": client_secret, "code": code}
    if redirect_uri:
        data["redirect_uri"] = redirect_uri
    response, body = _post(f"{accounts_url}/oauth/v2/token", data=data, timeout=timeout, session=session)
    answer = interpret(response.status_code, body, purpose="grant", headers=response.headers)
    log.info("zoho grant exchanged at %s (refresh token %s)", _host(accounts_url),
             "received" if answer.refresh_token else "missing")
    return answer


def refresh(accounts_url: str, *, client_id: str, client_secret: str, refresh_token: str,
            timeout: float = TIMEOUT, session=None) -> TokenAnswer:
    """A new access token from the refresh token (Zoho allows 10 per refresh token per 10 minutes)."""
    data = {"grant_type": "refresh_token", "client_id": client_id, "client_secret": client_secret,
            "refresh_token": refresh_token}
    response, body = _post(f"{accounts_url}/oauth/v2/token", data=data, timeout=timeout, session=session)
    answer = interpret(response.status_code, body, purpose="refresh", headers=response.headers)
    log.info("zoho access token refreshed at %s", _host(accounts_url))
    return answer


def revoke(accounts_url: str, refresh_token: str, *, timeout: float = TIMEOUT, session=None) -> None:
    """Revoke a refresh token at Zoho (frees one of the 20 a user may hold); raises ZohoError on failure."""
    response, body = _post(f"{accounts_url}/oauth/v2/token/revoke", params={"token": refresh_token},
                           timeout=timeout, session=session)
    if isinstance(body, dict) and (body.get("status") == "success" or (response.ok and not body.get("error"))):
        log.info("zoho refresh token revoked at %s", _host(accounts_url))
        return
    if isinstance(body, dict) and _is_throttle(body):
        raise Throttled(THROTTLE_MESSAGE, code="Access Denied")
    if response.status_code >= 500:
        raise Unavailable(f"Zoho's accounts server failed on its side (HTTP {response.status_code})", code=str(response.status_code))
    reason = (body or {}).get("error") if isinstance(body, dict) else None
    raise ZohoError(f"Zoho did not confirm the revocation ({reason or 'HTTP ' + str(response.status_code)})",
                    code=reason)


def authorization_url(accounts_url: str, *, client_id: str, redirect_uri: str, state: str, scope: str = SCOPE) -> str:
    """Zoho's consent page for the redirect flow; offline access + consent so a refresh token comes back."""
    query = urlencode({
        "scope": scope,
        "client_id": client_id,
        "response_type": "code",
        "access_type": "offline",
        "prompt": "consent",
        "redirect_uri": redirect_uri,
        "state": state,
    })
    return f"{accounts_url}/oauth/v2/auth?{query}"
