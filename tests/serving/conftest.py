"""A real gunicorn started as the Procfile and `make run` start it, and raw-socket helpers.

`Served`: a development instance in a temporary folder, then `gunicorn wsgi:app` on a free port.
"""
from __future__ import annotations

import datetime as dt
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Settings the test must not inherit from whoever runs it; the gunicorn gets its own.
DEMO_EMAILS = {1: "ada@example.com", 2: "grace@example.com", 3: "soren@example.dk", 4: "chidi@example.ng"}
_DROPPED = ("DATABASE_URL", "OPS_DATABASE_URL", "PORT", "HOST", "WEB_CONCURRENCY", "SECRET_KEY")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    """`gunicorn wsgi:app` (gunicorn.conf.py as shipped) on 127.0.0.1:`port`, its log in `log_path`."""

    def __init__(self, tmp_path, **env):
        from gateway import create_app, ops
        from gateway.inbound import secrets
        from gateway.state.migrate import init_db

        instance = tmp_path / "instance"
        urls = {"DATABASE_URL": f"sqlite:///{instance}/gateway.db", "OPS_DATABASE_URL": f"sqlite:///{instance}/ops.db"}
        app = create_app({"INSTANCE_PATH": str(instance), "GATEWAY_ENV": "development", "GATEWAY_RUN_WORKER": False, **urls})
        rt = app.extensions["gateway"]
        try:
            init_db(rt.store)  # what the release phase (`flask --app wsgi init-db`) does
            ops.create_demo(rt.ops, only_if_absent=True)  # what `make run` (dev-bootstrap) does
            self.secret = secrets.webhook_secrets(rt)["current"]
        finally:
            rt.close()
        self.port = free_port()
        self.log_path = tmp_path / "gunicorn.log"
        full_env = {k: v for k, v in os.environ.items() if k not in _DROPPED and not k.startswith(("GATEWAY_", "GUNICORN_"))}
        # The Procfile's shape (2 workers, gunicorn.conf.py's threads), not development's one simulator-serving process.
        full_env.update(urls, GATEWAY_ENV="development", GATEWAY_INSTANCE_PATH=str(instance),
                        GUNICORN_BIND=f"127.0.0.1:{self.port}", WEB_CONCURRENCY="2")
        full_env.update(env)
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "gunicorn"), "wsgi:app"], cwd=REPO,
                                         env=full_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self._modified = int(time.time()) - 3600
        # Both workers have loaded the app: with background work, post_worker_init logs its queue worker.
        self._wait_until_serving("Booting worker" if env.get("GATEWAY_RUN_WORKER") == "0" else "queue worker")

    def _wait_until_serving(self, marker: str, seconds: float = 60.0) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"gunicorn exited: {self.output()}")
            try:
                if self.get("/healthz", timeout=2).status == 200 and self.output().count(marker) >= 2:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"gunicorn did not answer /healthz: {self.output()}")

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def connection(self, timeout: float = 4.0) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def get(self, path: str, timeout: float = 4.0, headers: dict | None = None) -> http.client.HTTPResponse:
        conn = self.connection(timeout)
        try:
            conn.request("GET", path, headers=headers or {})
            response = conn.getresponse()
            response.read()
            return response
        finally:
            conn.close()

    def webhook_body(self, customer: int = 2) -> bytes:
        """A valid Contacts delivery (form-encoded), a second later than the previous one."""
        self._modified += 1
        stamp = dt.datetime.fromtimestamp(self._modified, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        return urllib.parse.urlencode({"id": f"77{customer}", "ops_id": str(customer), "email": DEMO_EMAILS[customer],
                                       "first_name": f"Served{self._modified}", "modified_time": stamp}).encode()

    def webhook_headers(self) -> dict:
        return {"X-Webhook-Token": self.secret, "Content-Type": "application/x-www-form-urlencoded"}

    def post_webhook(self, conn: http.client.HTTPConnection | None = None, timeout: float = 4.0) -> tuple[int, dict]:
        """POST a valid signed delivery; (status, JSON answer). Uses `conn` (kept open) when given."""
        own = conn is None
        conn = conn or self.connection(timeout)
        try:
            conn.request("POST", "/webhooks/zoho/contacts", body=self.webhook_body(), headers=self.webhook_headers())
            response = conn.getresponse()
            return response.status, json.loads(response.read() or b"{}")
        finally:
            if own:
                conn.close()

    def stop(self) -> int:
        """SIGTERM (as the platform stops a dyno); the exit code."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(40)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        return self.proc.returncode


@pytest.fixture
def served(tmp_path):
    server = Served(tmp_path)
    yield server
    server.stop()


class Raw:
    """A raw HTTP/1.1 client socket: send bytes as they are, read responses one by one."""

    def __init__(self, port: int, timeout: float = 4.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> None:
        piece = self.sock.recv(65536)
        if not piece:
            raise ConnectionError(f"closed by the server; unread: {self.buf!r}")
        self.buf += piece

    def response(self) -> tuple[int, dict, bytes]:
        """The next response, with a Content-Length (1xx answers included): (status, headers, body)."""
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
        length = int(headers.get("content-length", "0"))
        while len(self.buf) < length:
            self._fill()
        body, self.buf = self.buf[:length], self.buf[length:]
        return int(lines[0].split()[1]), headers, body

    def closed(self) -> bool:
        """Whether the server closed the connection (EOF or reset) within the socket timeout."""
        try:
            while True:
                self._fill()
        except (ConnectionError, OSError) as exc:
            return not isinstance(exc, TimeoutError)

    def close(self) -> None:
        self.sock.close()


def chunked_webhook(served: Served) -> tuple[int, dict]:
    """A signed delivery whose body comes in three chunks (Transfer-Encoding: chunked)."""
    body = served.webhook_body()
    raw = Raw(served.port)
    try:
        head = "".join(f"{k}: {v}\r\n" for k, v in served.webhook_headers().items())
        raw.send(f"POST /webhooks/zoho/contacts HTTP/1.1\r\nHost: gateway.test\r\n{head}Transfer-Encoding: chunked\r\n\r\n".encode())
        for piece in (body[:10], body[10:25], body[25:]):
            raw.send(b"%x\r\n%s\r\n" % (len(piece), piece))
        raw.send(b"0\r\n\r\n")
        status, _, answer = raw.response()
        return status, json.loads(answer)
    finally:
        raw.close()
