"""The fake OnPrintShop API's HTTP side: token endpoint and GraphQL on a loopback port, the rate
limit (`fake.rate`, 429 with Retry-After), 401 for unknown or expired tokens, faults on demand
(`fail_next`, `outage`, `latency`, `slow_after_mutation`); docs/ops-api.md, "The fake API"."""
from __future__ import annotations

import json
import secrets
import threading
import time
from collections import Counter, deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from graphql import graphql_sync, parse

from .schema import SCHEMA
from .store import Root, Store

TOKEN_TTL = 3600


class FakeOps:
    def __init__(self):
        self.lock = threading.RLock()
        self.calls: Counter = Counter()
        self.log: list[tuple[float, str, dict]] = []
        self.clients: dict[str, str] = {}
        self.tokens: dict[str, tuple[str, float]] = {}  # token -> (client id, expiry on the fake clock)
        self.rate = (120, 60.0)
        self.windows: dict[str, deque] = {}
        self.max_in_window = 0
        self.fail_next: list = []
        self.outage = False
        self.latency = 0.0
        self.slow_after_mutation = 0.0
        self.clock_offset = 0.0
        # How an empty list is answered: "code" (DATA_NOT_FOUND, HTTP 200), "message" ("Data not
        # found" with no code), "http-404" (DATA_NOT_FOUND with HTTP 404): the notes do not say which.
        self.not_found_form = "code"
        self.set_customer_calls: list[tuple[int, dict]] = []
        self.store = Store(self)
        self.root = Root(self.store)
        self._server = None

    # -- time and clients ---------------------------------------------------------------------------
    def now(self) -> float:
        return time.time() + self.clock_offset

    def advance(self, seconds: float) -> None:
        self.clock_offset += seconds

    def add_client(self) -> tuple[str, str]:
        client_id, secret = "ops-" + secrets.token_hex(6), secrets.token_hex(16)
        self.clients[client_id] = secret
        return client_id, secret

    # -- the two endpoints --------------------------------------------------------------------------
    def token(self, body) -> tuple[int, dict, dict]:
        with self.lock:
            self.calls["token"] += 1
        if not isinstance(body, dict) or body.get("grant_type") != "client_credentials":
            return 400, {"error": "unsupported_grant_type", "error_description": "grant_type must be client_credentials"}, {}
        if self.clients.get(str(body.get("client_id"))) != body.get("client_secret"):
            return 401, {"error": "invalid_client", "error_description": "Client authentication failed"}, {}
        token = secrets.token_urlsafe(24)
        with self.lock:
            self.tokens[token] = (body["client_id"], self.now() + TOKEN_TTL)
        return 200, {"access_token": token, "token_type": "Bearer", "expires_in": TOKEN_TTL}, {}

    def graphql(self, headers: dict, body) -> tuple[int, dict, dict]:
        auth = headers.get("authorization", "")
        client = self.tokens.get(auth[7:]) if auth.startswith("Bearer ") else None
        if client is None or client[1] <= self.now():
            with self.lock:
                self.calls["401"] += 1
            return 401, {"errors": [{"message": "invalid token", "extensions": {"code": "UNAUTHENTICATED"}}]}, {}
        with self.lock:
            window = self.windows.setdefault(client[0], deque())
            now = time.monotonic()
            while window and window[0] <= now - self.rate[1]:
                window.popleft()
            if len(window) >= self.rate[0]:
                self.calls["429"] += 1
                wait = max(1, int(window[0] + self.rate[1] - now + 0.999))
                return 429, {"errors": [{"message": "Too many requests", "extensions": {"code": "TOO_MANY_REQUESTS"}}]}, \
                    {"Retry-After": str(wait)}
            window.append(now)
            self.max_in_window = max(self.max_in_window, len(window))
            scripted = self.fail_next.pop(0) if self.fail_next else None
        if scripted is not None:
            self.calls[f"scripted {scripted}"] += 1
            return scripted, {"errors": [{"message": "scripted failure", "extensions": {"code": "INTERNAL_SERVER_ERROR"}}]}, {}
        if not isinstance(body, dict) or not isinstance(body.get("query"), str):
            return 400, {"errors": [{"message": "Must provide query string.", "extensions": {"code": "BAD_REQUEST"}}]}, {}
        try:
            document = parse(body["query"])
            operation = document.definitions[0].selection_set.selections[0].name.value
        except Exception as exc:
            return 400, {"errors": [{"message": str(exc), "extensions": {"code": "GRAPHQL_PARSE_FAILED"}}]}, {}
        variables = body.get("variables") or {}
        with self.lock:
            self.calls[operation] += 1
            self.log.append((time.time(), operation, variables))
            result = graphql_sync(SCHEMA, body["query"], root_value=self.root, variable_values=variables)
        if result.data is None and result.errors:
            return 400, {"errors": [{"message": e.message, "extensions": {"code": "GRAPHQL_VALIDATION_FAILED"}}
                                    for e in result.errors]}, {}
        answer = {"data": result.data}
        status = 200
        if result.errors:
            answer["errors"] = [{"message": e.message, "path": e.path, "extensions": e.extensions or {}} for e in result.errors]
            if all((e.extensions or {}).get("code") == "DATA_NOT_FOUND" for e in result.errors):
                if self.not_found_form == "message":
                    for error in answer["errors"]:
                        error["extensions"] = {}
                elif self.not_found_form == "http-404":
                    status = 404
        if self.slow_after_mutation and document.definitions[0].operation.value == "mutation":
            time.sleep(self.slow_after_mutation)
        return status, answer, {}

    # -- lifecycle ------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeOps:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw or b"null")
                except ValueError:
                    body = None
                headers = {k.lower(): v for k, v in self.headers.items()}
                if fake.latency:
                    time.sleep(fake.latency)
                if fake.outage:
                    status, answer, extra = 503, {"errors": [{"message": "Service Unavailable"}]}, {}
                elif self.path == "/api/oauth/token":
                    status, answer, extra = fake.token(body)
                elif self.path in ("/api/", "/api"):
                    status, answer, extra = fake.graphql(headers, body)
                else:
                    status, answer, extra = 404, {"errors": [{"message": "Not found"}]}, {}
                payload = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                for key, value in extra.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                try:
                    self.wfile.write(payload)
                except OSError:
                    pass  # the caller gave up waiting

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 128

        self._server = Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, args=(0.05,), name="fake-ops", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
