"""gunicorn's gthread worker, except that the event loop reads each request before a thread runs it.

Head and body are read without blocking, under deadlines: a slow client holds a socket, never a thread.
"""
from __future__ import annotations

import errno
import selectors
import socket
import time
from functools import partial

from gunicorn import http
from gunicorn.workers.gthread import STOP_KEEPALIVE_LINGER, TConn, ThreadWorker

from .framing import RequestReader, Source

READ_SIZE = 64 * 1024
LINGER_SECONDS = 2.0  # after a final answer, how long a closing socket drains what the client still sends
LINGER_MAX_BYTES = 64 * 1024
SWEEP_EVERY = 0.5  # how often deadlines are checked (the loop wakes at least once a second)


class Conn(TConn):
    """A client connection: requests are read by the event loop, then served by a thread."""

    def __init__(self, worker, sock, client, server):
        super().__init__(worker.cfg, sock, client, server)
        self.worker = worker
        self.source = Source()
        self.parser = http.get_parser(worker.cfg, self.source, client)
        self.initialized = True  # plain HTTP/1.x (check_config): nothing left for TConn.init()
        self.reader = None
        self.reusable = True
        self.started = self.deadline = 0.0
        self.body_started = None

    def close(self, graceful=False):
        # Called on the event loop's thread only (finish_request, deadlines), as the poller needs.
        self.source.close()
        if self.reader is not None:
            self.reader.close()
        if graceful:
            self.worker.linger(self.sock)  # TConn's graceful close would block the event loop up to 2 s
        else:
            super().close()


class BufferingWorker(ThreadWorker):
    """gthread with whole requests buffered in the event loop; slow ones cut (408) after a bound."""

    header_timeout = 10.0  # the request line and headers, from the connection (or its first byte when reused)
    body_timeout = 10.0  # the body, from the end of the head ...
    body_min_rate = 1024  # ... plus a second for every this many bytes received ...
    body_max_seconds = 60.0  # ... up to this in all
    max_body = 1024 * 1024 + 64 * 1024  # the app's largest (admin forms, 1 MiB) plus room to see it exceeded

    @classmethod
    def check_config(cls, cfg, log):
        super().check_config(cfg, log)
        unsupported = [name for name, on in (
            ("TLS (certfile/keyfile)", cfg.is_ssl), ("http2_cleartext", cfg.http2_cleartext != "off"),
            ("proxy_protocol", cfg.proxy_protocol != "off"), ("protocol", getattr(cfg, "protocol", "http") != "http"),
        ) if on]
        if unsupported:
            raise RuntimeError(f"{cls.__name__} serves plain HTTP/1.1 only; turn off: {', '.join(unsupported)}")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.reading = {}  # Conn -> None: connections whose request is being read
        self.lingering = {}  # socket -> [deadline, bytes drained]
        self._next_sweep = 0.0
        self._stopping_since = None

    # -- reading requests in the event loop ----------------------------------------------------
    def accept(self, listener):
        try:
            sock, client = listener.accept()
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        self._read(Conn(self, sock, client, listener.getsockname()))

    def on_client_socket_readable(self, conn, client):
        """A kept-alive connection has its next request coming."""
        self.poller.unregister(client)
        self.keepalived_conns.remove(conn)
        self._read(conn)

    def _read(self, conn):
        conn.reader = RequestReader(self.max_body)
        conn.started = time.monotonic()
        conn.deadline = conn.started + self.header_timeout
        conn.body_started = None
        self.reading[conn] = None
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_readable, conn))

    def _on_readable(self, conn, sock):
        reader = conn.reader
        try:
            # Peek, then take only this request's bytes: a pipelined next one stays in the socket,
            # which stays readable for when the connection is kept alive.
            data = sock.recv(READ_SIZE, socket.MSG_PEEK)
            if data:
                taken = reader.feed(data)
                if not taken or len(sock.recv(taken)) != taken:
                    data = b""  # not expected: handled as a lost connection, never as a busy loop
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:  # the client went away
            return self._drop(conn)
        if reader.too_large:
            return self._refuse(conn, 431, "Request Header Fields Too Large", "a request head over 64 KiB")
        if reader.head_done:
            if conn.body_started is None:
                conn.body_started = time.monotonic()
                if reader.expect_continue and not self._send(sock, b"HTTP/1.1 100 Continue\r\n\r\n"):
                    return self._drop(conn)
            allowed = min(self.body_max_seconds, self.body_timeout + reader.body_bytes / self.body_min_rate)
            conn.deadline = conn.body_started + allowed
        if reader.done:
            self._stop_reading(conn)
            conn.reusable = reader.reusable
            conn.source.load(reader)
            conn.reader = None
            self.enqueue_req(conn)

    def _send(self, sock, data: bytes) -> bool:
        try:
            return sock.send(data) == len(data)
        except OSError:
            return False

    # -- in the thread ---------------------------------------------------------------------------
    def handle_request(self, req, conn):
        # The event loop answered "Expect: 100-continue" already, or chose not to (a body the app
        # refuses unread): gunicorn must not send one now.
        req._expected_100_continue = False
        if not conn.reusable:
            req.force_close()
        return super().handle_request(req, conn)

    def _keepalive_after(self, conn, keepalive):
        if not super()._keepalive_after(conn, keepalive):
            return False
        # Reused only when gunicorn's parser took exactly the bytes framed as this request.
        return conn.reusable and conn.source.exhausted() and not conn.parser.unreader.buf.getvalue()

    def finish_request(self, conn, fs):
        conn.source.close()  # the thread is done with the buffered request
        super().finish_request(conn, fs)

    # -- deadlines and closing -----------------------------------------------------------------
    def murder_pending(self):
        """Also cut requests past their deadline (called by the loop at least once a second)."""
        super().murder_pending()
        now = time.monotonic()
        if now < self._next_sweep:
            return
        self._next_sweep = now + SWEEP_EVERY
        if not self.alive and self._stopping_since is None:
            self._stopping_since = now
        stopping = self._stopping_since is not None and now - self._stopping_since >= STOP_KEEPALIVE_LINGER
        for conn in [c for c in self.reading if c.deadline <= now or (stopping and not c.reader.started)]:
            if conn.reader.started:
                part = "body" if conn.reader.head_done else "request head"
                self._refuse(conn, 408, "Request Timeout", f"no complete {part} after {now - conn.started:.1f} s")
            else:
                self._drop(conn)  # nothing sent yet: closed silently, as an idle kept-alive connection
        for sock in [s for s, (deadline, _) in self.lingering.items() if deadline <= now]:
            self._unlinger(sock)

    def murder_keepalived(self, force=False):
        super().murder_keepalived(force)
        if force:  # the worker is exiting
            for conn in list(self.reading):
                self._drop(conn)
            for sock in list(self.lingering):
                self._unlinger(sock)

    def _stop_reading(self, conn):
        try:
            self.poller.unregister(conn.sock)
        except (KeyError, ValueError, OSError):
            pass
        self.reading.pop(conn, None)

    def _drop(self, conn):
        self._stop_reading(conn)
        self.nr_conns -= 1
        conn.close()

    def _refuse(self, conn, status: int, reason: str, why: str):
        """Answer `status` and close: the client gets an answer, not just a closed connection."""
        self._stop_reading(conn)
        self.nr_conns -= 1
        text = reason.lower() + "\n"
        self._send(conn.sock, (f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\nContent-Type: text/plain\r\n"
                               f"Content-Length: {len(text)}\r\n\r\n{text}").encode())
        self.log.info("Closed a slow or oversized request from %s: %s (%d)", _address(conn.client), why, status)
        conn.close(graceful=True)

    def linger(self, sock):
        """Close after a final answer without a reset: send FIN, read what still comes for a while."""
        try:
            sock.shutdown(socket.SHUT_WR)
            sock.setblocking(False)
            self.poller.register(sock, selectors.EVENT_READ, self._on_lingering_readable)
        except (OSError, ValueError, KeyError):
            sock.close()
            return
        self.lingering[sock] = [time.monotonic() + LINGER_SECONDS, 0]

    def _on_lingering_readable(self, sock):
        try:
            data = sock.recv(READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        entry = self.lingering[sock]
        entry[1] += len(data)
        if not data or entry[1] >= LINGER_MAX_BYTES:
            self._unlinger(sock)

    def _unlinger(self, sock):
        self.lingering.pop(sock, None)
        try:
            self.poller.unregister(sock)
        except (KeyError, ValueError, OSError):
            pass
        sock.close()


def _address(client) -> str:
    return f"{client[0]}:{client[1]}" if isinstance(client, tuple) and len(client) >= 2 else str(client)
