"""The simulator on its own threaded HTTP server on a free loopback port (the test suite's fake Zoho)."""
from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from .messages import Request, last_values


class LoopbackServer:
    def __init__(self, handle):
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _handle(self):
                split = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                req = Request(method=self.command, path=split.path, query=last_values(split.query),
                              headers={k.lower(): v for k, v in self.headers.items()}, body=body)
                resp = handle(req)
                payload, headers = resp.wire()
                self.send_response(resp.status)
                for key, value in headers:
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 128

        self._server = Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="zoho-simulator", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def serve(handle) -> LoopbackServer:
    """Start serving `handle(Request) -> Response`; `.url` says where, `.stop()` ends it."""
    return LoopbackServer(handle)
