"""The fake Zoho's HTTP core: a real threaded HTTP server on a free loopback port.

Each concern installs its routes and state from its own module (`accounts.py`, `records.py`,
`notifications.py`: each has `install(fake)`), so the server grows without one big file.
Every call is counted (`fake.calls["POST /oauth/v2/token"]`, also by handler name), logged
in `fake.requests`, and in-flight CRM API calls (not the accounts server's) are tracked
(`fake.max_in_flight`) for the concurrency tests. `fake.latency` (seconds) delays every API answer.
"""
from __future__ import annotations

import importlib
import json
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

CONCERN_MODULES = ("accounts", "records", "notifications")


@dataclass
class Request:
    method: str
    path: str
    query: dict
    headers: dict
    body: bytes
    match: re.Match | None = None

    @property
    def form(self) -> dict:
        parsed = parse_qs(self.body.decode("utf-8"), keep_blank_values=True)
        return {k: v[-1] for k, v in parsed.items()}

    @property
    def params(self) -> dict:
        """Query and form parameters together (Zoho's token endpoint takes either)."""
        merged = dict(self.query)
        if self.body and "json" not in self.headers.get("content-type", ""):
            merged.update(self.form)
        return merged

    def json(self):
        return json.loads(self.body or b"null")


@dataclass
class Response:
    status: int = 200
    body: object = None
    headers: dict = field(default_factory=dict)


class FakeZoho:
    def __init__(self):
        self.lock = threading.RLock()
        self.routes: list[tuple[str, re.Pattern, object, str]] = []
        self.calls: Counter = Counter()
        self.requests: list[tuple[str, str]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.latency = 0.0
        self.clock_offset = 0.0  # tests move the fake's clock forward instead of sleeping
        # Shared state between the concerns:
        # access tokens the accounts server issued: token -> expiry (fake clock); records.py and
        # notifications.py call check_auth(), which answers 401 INVALID_TOKEN for any other.
        self.access_tokens: dict[str, float] = {}
        self.token_scopes: dict[str, str] = {}  # access token -> the scopes its grant had (comma-separated)
        # CRM records by module and id, each a dict of API field names incl. "id" and "Modified_Time".
        self.records: dict[str, dict[str, dict]] = {"Contacts": {}, "Deals": {}, "Accounts": {}}
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        for name in CONCERN_MODULES:
            try:
                module = importlib.import_module(f"{__package__}.{name}")
            except ModuleNotFoundError as exc:
                if exc.name != f"{__package__}.{name}":
                    raise
                continue
            module.install(self)

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
            return Response(401, {"code": "INVALID_TOKEN", "details": {}, "message": "invalid oauth token", "status": "error"})
        if scope is not None:
            with self.lock:
                granted = self.token_scopes.get(token, "")
            if not any(s.strip().startswith(scope) for s in granted.split(",")):
                self.calls["401 OAUTH_SCOPE_MISMATCH"] += 1
                return Response(401, {"code": "OAUTH_SCOPE_MISMATCH", "details": {},
                                      "message": "invalid oauth scope to access this URL", "status": "error"})
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
        return Response(404, {"code": "INVALID_URL_PATTERN", "message": "Please check if the URL trying to access is a correct one", "status": "error", "details": {}})

    # -- lifecycle ----------------------------------------------------------------------------
    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeZoho:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _handle(self):
                split = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                req = Request(
                    method=self.command,
                    path=split.path,
                    query={k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()},
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                )
                # Zoho's concurrency limit counts CRM API calls; the accounts server is another host.
                counted = "/oauth/" not in req.path
                with fake.lock:
                    fake.in_flight += counted
                    fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
                try:
                    if fake.latency:
                        time.sleep(fake.latency)
                    resp = fake.dispatch(req)
                finally:
                    with fake.lock:
                        fake.in_flight -= counted
                # 204 and 304 have no body, and no Content-Length (a 304's would describe the
                # representation not sent); clients know the message ends with the headers.
                bodiless = resp.status in (204, 304)
                payload = b"" if resp.body is None or bodiless else json.dumps(resp.body).encode()
                self.send_response(resp.status)
                if payload:
                    self.send_header("Content-Type", "application/json;charset=UTF-8")
                for key, value in resp.headers.items():
                    self.send_header(key, str(value))
                if not bodiless:
                    self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 128

        self._server = Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="fake-zoho", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
