"""The simulator's core: routes, the state its parts share, access-token checks, the clock. Each part
(accounts, records, notifications, reads, workflows) installs its routes and state with `install(sim)`;
every call is counted in `sim.calls` and logged in `sim.requests` (docs/simulator.md)."""
from __future__ import annotations

import re
import threading
import time
from collections import Counter

from . import accounts, loopback, notifications, reads, records, workflows
from .messages import Request, Response, error

PARTS = (accounts, records, notifications, reads, workflows)
FIRST_ID = 5725767000000000001  # Zoho record ids are 19 digits


class ZohoSimulator:
    """Zoho's accounts server and CRM API for one organisation, in memory."""

    def __init__(self, first_id: int = FIRST_ID):
        self.lock = threading.RLock()
        self.routes: list[tuple[str, re.Pattern, object, str]] = []
        self.calls: Counter = Counter()
        self.requests: list[tuple[str, str]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.latency = 0.0
        self.clock_offset = 0.0  # tests move the simulator's clock forward instead of sleeping
        self.first_id = first_id
        # The access tokens the accounts server issued (token -> expiry on this clock) and the
        # scopes of the grant each came from; check_auth() answers 401 for any other.
        self.access_tokens: dict[str, float] = {}
        self.token_scopes: dict[str, str] = {}
        # CRM records by module and id, each a dict of API field names with "id" and "Modified_Time".
        self.records: dict[str, dict[str, dict]] = {"Contacts": {}, "Deals": {}, "Accounts": {}}
        self.base_url: str | None = None  # where it is served, when not by its own loopback server
        self._server: loopback.LoopbackServer | None = None
        for part in PARTS:
            part.install(self)

    # -- time ---------------------------------------------------------------------------------
    def now(self) -> float:
        return time.time() + self.clock_offset

    def advance(self, seconds: float) -> None:
        self.clock_offset += seconds

    # -- auth ---------------------------------------------------------------------------------
    def check_auth(self, req: Request, scope: str | None = None) -> Response | None:
        """None when the request carries a live access token (whose grant had a scope starting with
        `scope`, when given: e.g. "ZohoCRM.notifications." for the watch endpoints), else Zoho's 401."""
        header = req.headers.get("authorization", "")
        token = header[len("Zoho-oauthtoken "):] if header.startswith("Zoho-oauthtoken ") else None
        with self.lock:
            expires = self.access_tokens.get(token) if token else None
        if expires is None or expires <= self.now():
            self.calls["401 INVALID_TOKEN"] += 1
            return error(401, "INVALID_TOKEN", "invalid oauth token")
        if scope is not None:
            with self.lock:
                granted = self.token_scopes.get(token, "")
            if not any(s.strip().startswith(scope) for s in granted.split(",")):
                self.calls["401 OAUTH_SCOPE_MISMATCH"] += 1
                return error(401, "OAUTH_SCOPE_MISMATCH", "invalid oauth scope to access this URL")
        return None

    # -- routing ------------------------------------------------------------------------------
    def route(self, method: str, pattern: str, name: str | None = None):
        def decorator(handler):
            self.routes.append((method, re.compile(pattern + r"\Z"), handler, name or handler.__name__))
            return handler

        return decorator

    def dispatch(self, req: Request) -> Response:
        for method, pattern, handler, name in self.routes:
            match = pattern.match(req.path)
            if method == req.method and match:
                req.match = match
                with self.lock:
                    self.calls[name] += 1
                    self.calls[f"{req.method} {pattern.pattern[:-2]}"] += 1
                    self.requests.append((req.method, req.path))
                return handler(req)
        return error(404, "INVALID_URL_PATTERN", "Please check if the URL trying to access is a correct one")

    def handle(self, req: Request) -> Response:
        """Answer one call, counted in flight (`max_in_flight`) and after `latency` seconds."""
        # Zoho's concurrency limit counts CRM API calls; the accounts server is another host.
        counted = "/oauth/" not in req.path
        with self.lock:
            self.in_flight += counted
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.latency:
                time.sleep(self.latency)
            return self.dispatch(req)
        finally:
            with self.lock:
                self.in_flight -= counted

    # -- serving ------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """Its accounts server and API domain (one origin serves both)."""
        if self.base_url:
            return self.base_url
        return self._server.url

    def start(self) -> ZohoSimulator:
        """Serve it on a free loopback port (the test suite's fake Zoho)."""
        self._server = loopback.serve(self.handle)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None
