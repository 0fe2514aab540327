"""OnPrintShop's GraphQL API over HTTP: the shared token, the "ops_api" limiter, typed errors.

401 → one new token and one retry; 429 → every process waits out Retry-After; outages are
OpsUnavailable, refusals OpsRefused; `DATA_NOT_FOUND` on a list is no rows (docs/ops-api.md)."""
from __future__ import annotations

import logging
import threading
import time

import requests

from ...state.limiter import NoPermit
from ..port import OpsNeedsMoreCalls, OpsRefused, OpsUnavailable
from . import credentials

log = logging.getLogger("gateway.ops.api")

CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 30.0
HOLD_SECONDS = 45.0      # longer than a call may run at OnPrintShop (connect + read timeouts)
WAIT_SECONDS = 60.0      # background work waits this long for a permit
MAX_PATIENT_WAIT = 600.0  # a patient listing waits out a 429's Retry-After up to this long
AUTH_CODES = ("UNAUTHENTICATED",)
AUTH_WORDS = ("invalid token", "token expired", "expired token")
NOT_FOUND_CODES = ("DATA_NOT_FOUND",)
NOT_FOUND_MESSAGE = "data not found"


class NotConnected(OpsUnavailable):
    """No API client is configured yet."""

    def __init__(self):
        super().__init__("OnPrintShop's API is not connected: save the API client on the admin page (Connect to "
                         "OnPrintShop) or run `flask --app wsgi configure-ops`")


class Throttled(OpsUnavailable):
    """OnPrintShop answered 429: every process waits out its Retry-After (the limiter is blocked)."""


class Permits:
    """Where a request's permit comes from: the limiter (waiting up to `wait`), or permits taken
    beforehand, whose state-store writes (giving back, a 429's block) wait for `settle()`: their
    caller holds a state-store transaction that such a write would have to wait for."""

    def __init__(self, limiter, wait: float = WAIT_SECONDS, taken: list | None = None):
        self.limiter = limiter
        self.wait = wait
        self.taken = taken
        self.spent: list = []
        self.block_for = 0.0

    @property
    def deferred(self) -> bool:
        return self.taken is not None

    def release(self, permit) -> None:
        if self.deferred:
            self.spent.append(permit)
        else:
            self.limiter.give_back([permit])

    def block(self, seconds: float) -> None:
        if self.deferred:
            self.block_for = max(self.block_for, seconds)
        else:
            self.limiter.block(seconds)

    def settle(self) -> None:
        """Give back every permit taken beforehand (used or not) and apply a 429's block."""
        if self.block_for:
            self.limiter.block(self.block_for)
        self.limiter.give_back(self.spent + (self.taken or []))
        self.spent, self.block_for = [], 0.0
        if self.taken is not None:
            self.taken.clear()

    def ensure(self, n: int) -> None:
        """Raise OpsNeedsMoreCalls unless `n` more calls can be made from the permits taken beforehand."""
        if self.taken is not None and len(self.taken) < n:
            raise OpsNeedsMoreCalls("this change needs more OnPrintShop API calls than were set aside for it; "
                                    "it is tried again alone with more")

    def one(self):
        if self.taken is None:
            try:
                return self.limiter.take(1, self.wait)[0]
            except NoPermit as exc:
                raise OpsUnavailable(f"OnPrintShop's API rate limit (OPS_API_RATE_LIMIT) is used up: {exc}") from None
        self.ensure(1)
        return self.taken.pop()


class GraphQL:
    """One per backend; thread-safe (a requests.Session per thread)."""

    def __init__(self, config, store, vault, limiter, tokens_factory, window: float, fixed=None):
        self.fixed = fixed  # credentials to check (configure-ops) instead of the ones in force
        self.config = config
        self.store = store
        self.vault = vault
        self.limiter = limiter
        self.window = window
        self.tokens = tokens_factory(self._mint)
        self._local = threading.local()
        self.last_ok = 0.0
        self.last_failure: tuple[float, str] | None = None
        self.rejected_token: str | None = None

    def credentials(self):
        creds = self.fixed or credentials.current(self.config, self.store, self.vault)
        if creds is None:
            raise NotConnected()
        return creds

    # -- the interface ------------------------------------------------------------------------
    def execute(self, document: str, variables: dict | None = None, permits: Permits | None = None) -> tuple[dict, list]:
        """(data, errors) of one GraphQL request; raises OpsUnavailable or OpsRefused (see the module)."""
        permits = permits or Permits(self.limiter)
        creds = self.credentials()
        token = self.tokens.get(creds)
        for attempt in (1, 2):
            status, headers, body = self._post(creds.graphql_url, {"query": document, "variables": variables or {}},
                                               permits, token=token)
            errors = body.get("errors") if isinstance(body, dict) and isinstance(body.get("errors"), list) else []
            if status in (401, 403) or any(_is_auth(e) for e in errors):
                if permits.deferred:  # no new token inside the caller's transaction: the next attempt gets one
                    self.rejected_token = token
                    raise self._failed(OpsUnavailable("OnPrintShop rejected the API token; the change is tried again"))
                if attempt == 1:
                    log.info("OnPrintShop rejected the API token; getting the current one")
                    token = self.tokens.rejected(creds, token)
                    continue
                raise self._failed(OpsUnavailable(f"OnPrintShop refused the API token (HTTP {status}): "
                                                  f"{_messages(errors) or 'no message'}; check the API client"))
            break
        if status == 429:
            wait = _retry_after(headers.get("Retry-After"))
            wait = self.window if wait is None else wait
            permits.block(wait)
            raise self._failed(Throttled(f"OnPrintShop asked to slow down (HTTP 429); its API calls wait {wait:.0f} s"))
        if status >= 500 or status == 408:
            raise self._failed(OpsUnavailable(f"OnPrintShop's API failed on its side (HTTP {status}); tried again later"))
        if not isinstance(body, dict):
            raise self._failed(OpsUnavailable(f"OnPrintShop's API answered HTTP {status} without a GraphQL body"))
        data = body.get("data") if isinstance(body.get("data"), dict) else {}
        real = [e for e in errors if not _is_not_found(e)]
        # An empty list may come with HTTP 400 or 404, but only as a GraphQL answer (with "data"):
        # a 404 from a wrong address is a refusal, never "no rows".
        empty_list = bool(errors) and not real and status in (400, 404) and "data" in body
        if (status >= 400 and not empty_list) or (real and not any(v is not None for v in data.values())):
            raise self._failed(OpsRefused(f"OnPrintShop refused the request (HTTP {status}): {_messages(real) or 'no message'}"))
        self._ok()
        return data, errors

    def rows(self, document: str, field: str, items: str, variables: dict, permits: Permits | None = None) -> tuple[list, int | None]:
        """(rows, total) of a list query; `DATA_NOT_FOUND` is no rows."""
        data, _errors = self.execute(document, variables, permits)
        block = data.get(field) or {}
        rows = block.get(items) or []
        total = next((v for k, v in block.items() if k.startswith("total") and isinstance(v, int)), None)
        return [r for r in rows if isinstance(r, dict)], total

    def pages(self, document: str, field: str, items: str, variables: dict, page: int = 250, patient: int = 0):
        """Every row of a list query, page by page (advancing by the rows each page really held).
        `patient`: a page answered 429 is asked again, up to that many times, once the Retry-After is over."""
        offset = 0
        while True:
            rows, total = self._page(document, field, items, {**variables, "limit": page, "offset": offset}, patient)
            yield rows
            offset += len(rows)
            if not rows or (total is not None and offset >= total) or (total is None and len(rows) < page):
                return

    def _page(self, document: str, field: str, items: str, variables: dict, patient: int):
        for attempt in range(patient + 1):
            try:
                return self.rows(document, field, items, variables)
            except Throttled:
                blocked = self.limiter.blocked_for()
                if attempt == patient or blocked > MAX_PATIENT_WAIT:
                    raise
                log.info("OnPrintShop asked to slow down; %s from %s is asked again in %.0f s",
                         field, variables.get("offset", 0), blocked)
                time.sleep(blocked)  # no transaction is held here; the next permit also waits for the block

    def health(self) -> str:
        """"ok" after a recent answer, "unavailable: …" after a recent failure, else "unknown"."""
        failure = self.last_failure
        if failure and failure[0] >= self.last_ok:
            return f"unavailable: {failure[1]}"
        return "ok" if self.last_ok else "unknown"

    # -- HTTP ---------------------------------------------------------------------------------
    def _mint(self, creds) -> dict:
        status, headers, body = self._post(creds.token_url, {"grant_type": "client_credentials", "client_id": creds.client_id,
                                                             "client_secret": creds.client_secret}, Permits(self.limiter))
        if status == 200 and isinstance(body, dict) and body.get("access_token"):
            return body
        reason = (body.get("error_description") or body.get("error") or body.get("message")) if isinstance(body, dict) else None
        if status == 429:
            self.limiter.block(_retry_after(headers.get("Retry-After")) or self.window)
        raise self._failed(OpsUnavailable(f"OnPrintShop refused the API client (HTTP {status} {reason or 'no reason given'}): "
                                          "check the URL, client id and secret"))

    def _post(self, url: str, payload: dict, permits: Permits, token: str | None = None):
        permit = permits.one()
        session = getattr(self._local, "session", None) or requests.Session()
        self._local.session = session
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        permit.sent()
        try:
            response = session.post(url, json=payload, headers=headers, timeout=(CONNECT_TIMEOUT, READ_TIMEOUT))
            permit.answered()
        except requests.Timeout:
            raise self._failed(OpsUnavailable(f"OnPrintShop's API did not answer within {READ_TIMEOUT:.0f} s")) from None
        except requests.RequestException as exc:
            raise self._failed(OpsUnavailable(f"OnPrintShop's API cannot be reached ({exc.__class__.__name__})")) from None
        finally:
            permits.release(permit)
        try:
            body = response.json()
        except ValueError:
            body = None
        return response.status_code, response.headers, body

    def _ok(self) -> None:
        self.last_ok = time.time()

    def _failed(self, exc: Exception) -> Exception:
        self.last_failure = (time.time(), str(exc))
        log.warning("%s", exc)
        return exc


def _code(error) -> str | None:
    ext = error.get("extensions") if isinstance(error, dict) else None
    return str(ext.get("code")) if isinstance(ext, dict) and ext.get("code") else None


def _is_not_found(error) -> bool:
    """An empty list, said by its code, or by its message alone (no other code)."""
    message = str(error.get("message", "")).lower() if isinstance(error, dict) else ""
    code = _code(error)
    return code in NOT_FOUND_CODES or (code is None and message.startswith(NOT_FOUND_MESSAGE))


def _is_auth(error) -> bool:
    message = str(error.get("message", "")).lower() if isinstance(error, dict) else ""
    return _code(error) in AUTH_CODES or any(word in message for word in AUTH_WORDS)


def _messages(errors) -> str:
    return "; ".join(str(e.get("message", ""))[:200] for e in errors if isinstance(e, dict))[:500]


def _retry_after(value) -> float | None:
    try:
        return max(0.0, float(str(value).strip())) if value not in (None, "") else None
    except ValueError:
        return None
