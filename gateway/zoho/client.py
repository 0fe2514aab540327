"""The Zoho CRM API client: what every call needs (base URL, the shared token, one retry on a
rejected token, the deployment-wide gate, typed failures); callers read the response themselves
(docs/zoho.md, "The API client")."""
from __future__ import annotations

import contextlib
import logging
import threading
import time

import requests
from urllib.parse import urlsplit

from .datacenters import api_url
from . import gate
from .errors import ApiRefused, Throttled, Unavailable, parse_retry_after

log = logging.getLogger("gateway.zoho.client")

CONNECT_TIMEOUT = 10  # seconds; with the read timeout, within gate.SLOT_LEASE_SECONDS


class _NoPermit:
    def answered(self) -> None:
        pass


def _zoho_code(response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    if isinstance(body, dict):
        code = body.get("code")
        if code is None and isinstance(body.get("data"), list) and body["data"]:
            code = (body["data"][0] or {}).get("code")
        return str(code) if code else None
    return None


def _message(response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    return str(body.get("message") or "")[:200] if isinstance(body, dict) else ""


class ZohoClient:
    """One per runtime; thread-safe (a requests.Session per thread)."""

    def __init__(self, tokens, config, runtime=None):
        self.tokens = tokens
        self.config = config
        self.runtime = runtime
        self._local = threading.local()

    # -- plumbing -----------------------------------------------------------------------------
    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session

    def base_url(self) -> str:
        override = self.config.get("ZOHO_API_URL")
        if override:
            return str(override).rstrip("/")
        data_center, domain = self.tokens.api_domain()
        return api_url(self.config, data_center, domain)

    def _gate(self):
        if self.runtime is None:
            return contextlib.nullcontext(_NoPermit())
        return gate.for_runtime(self.runtime).call()

    # -- the interface ------------------------------------------------------------------------
    def request(self, method: str, path: str, *, params=None, json=None, headers=None, timeout: float = 30) -> requests.Response:
        """Send one CRM API call (`path` like "/crm/v8/Contacts/upsert") and return Zoho's response;
        raises Throttled, Unavailable, ApiRefused, NotConfigured, ReauthorizationNeeded, BudgetExhausted."""
        url = self.base_url() + "/" + path.lstrip("/")
        token = self.tokens.access_token()
        for attempt in (1, 2):
            response = self._send(method, url, token, params=params, json=json, headers=headers, timeout=timeout)
            if response.status_code != 401:
                break
            code = _zoho_code(response)
            if code == "INVALID_TOKEN" and attempt == 1:
                log.info("zoho rejected the access token (…%s); getting the current one", token[-4:])
                token = self.tokens.invalidate(token)
                continue
            raise ApiRefused(
                f"Zoho refused the request's authorization (HTTP 401 {code or ''}: {_message(response) or 'no message'}); "
                "check that the grant had the scope ZohoCRM.modules.ALL,ZohoCRM.notifications.ALL, then save the Zoho settings again",
                status=401, code=code,
            )
        if response.status_code == 429:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            raise Throttled(
                f"Zoho says too many requests (HTTP 429 {_zoho_code(response) or ''}); "
                + (f"retry after {retry_after:.0f} s" if retry_after is not None else "back off and retry later"),
                retry_after=retry_after, code=_zoho_code(response) or "TOO_MANY_REQUESTS",
            )
        if response.status_code >= 500:
            raise Unavailable(f"Zoho failed on its side (HTTP {response.status_code}); the call will be retried later",
                              code=str(response.status_code))
        return response

    def _send(self, method, url, token, *, params, json, headers, timeout) -> requests.Response:
        all_headers = {"Authorization": f"Zoho-oauthtoken {token}", "Accept": "application/json"}
        all_headers.update(headers or {})
        started = time.perf_counter()
        with self._gate() as permit:
            try:
                response = self._session().request(method, url, params=params, json=json, headers=all_headers,
                                                   timeout=(CONNECT_TIMEOUT, timeout))
                permit.answered()  # Zoho is done with it: the permit is free at once
            except requests.Timeout:
                raise Unavailable(f"timeout: Zoho did not answer {method} {_path(url)} within {timeout:g} s", code="timeout") from None
            except requests.RequestException as exc:
                raise Unavailable(f"network error: could not reach Zoho for {method} {_path(url)} ({exc.__class__.__name__})",
                                  code="network") from None
        log.debug("zoho %s %s -> %s in %.0f ms", method, _path(url), response.status_code, (time.perf_counter() - started) * 1000)
        return response


def _path(url: str) -> str:
    return urlsplit(url).path
