"""Slow clients cannot starve the gateway: the tester's drill against the Procfile's gunicorn.

20 sockets trickle a head, 20 a body; the gateway answers within 2 s and cuts them (408) in time.
"""
from __future__ import annotations

import selectors
import socket
import threading
import time

import pytest

from tests.serving.conftest import chunked_webhook

TRICKLE_EVERY = 2.0
# The bounds the serving side promises (gateway/serving/worker.py): a head within 10 s of the
# connection, a body within 10 s of its head at the tester's rate. Slack for a busy machine.
HEAD_BOUND = 10.0
BODY_BOUND = 10.0
SLACK = 3.0
ANSWER_WITHIN = 2.0


class SlowClients:
    """Sockets trickling requests, driven by one thread; records when and how each was cut."""

    def __init__(self, port: int, heads: int, bodies: int):
        self.port = port
        self.opened = time.monotonic()
        self.clients = []
        self.stop = threading.Event()
        start_line = b"POST /webhooks/zoho/contacts HTTP/1.1\r\nHost: gateway.test\r\n"
        full_head = start_line + b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 60000\r\n\r\n"
        for i in range(heads + bodies):
            sock = socket.create_connection(("127.0.0.1", port), timeout=4)
            sock.setblocking(False)
            kind = "head" if i < heads else "body"
            sock.send(start_line if kind == "head" else full_head)
            now = time.monotonic()
            self.clients.append({"sock": sock, "kind": kind, "opened": now, "next": now + TRICKLE_EVERY, "sent": 0,
                                 "cut": None, "answer": b""})
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _piece(self, client) -> bytes:
        client["sent"] += 1
        return b"X-Slow-%d: %d\r\n" % (client["sent"], client["sent"]) if client["kind"] == "head" else b"a"

    def _run(self) -> None:
        selector = selectors.DefaultSelector()
        for client in self.clients:
            selector.register(client["sock"], selectors.EVENT_READ, client)
        while not self.stop.is_set() and any(c["cut"] is None for c in self.clients):
            for key, _ in selector.select(0.1):
                client = key.data
                try:
                    data = client["sock"].recv(4096)
                except OSError:
                    data = b""
                client["answer"] += data
                if not data:  # closed by the server (EOF after its answer, or reset)
                    client["cut"] = time.monotonic()
                    selector.unregister(client["sock"])
            now = time.monotonic()
            for client in self.clients:
                if client["cut"] is None and now >= client["next"]:
                    client["next"] = now + TRICKLE_EVERY
                    try:
                        client["sock"].send(self._piece(client))
                    except OSError:
                        pass  # the reset shows on the read side
        selector.close()

    def trickled_within(self, seconds: float) -> bool:
        """Whether every socket has sent at least one piece after its first, within `seconds`."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if all(c["sent"] >= 1 for c in self.clients):
                return True
            time.sleep(0.05)
        return False

    def all_cut_within(self, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if all(c["cut"] is not None for c in self.clients):
                return True
            time.sleep(0.1)
        return False

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        for client in self.clients:
            client["sock"].close()


def timed(call):
    """(seconds, result) of `call()`; a timeout or refused connection is the result."""
    started = time.monotonic()
    try:
        result = call()
    except OSError as exc:
        result = exc
    return time.monotonic() - started, result


@pytest.mark.slow
def test_twenty_slow_heads_and_twenty_slow_bodies_do_not_starve_the_gateway(served):
    slow = SlowClients(served.port, heads=20, bodies=20)
    timings = {}

    def answered(name, call):
        seconds, result = timed(call)
        timings[name] = (round(seconds, 2), result)
        assert seconds < ANSWER_WITHIN, f"{name} took {seconds:.2f} s ({result!r}); so far: {timings}"
        return result

    try:
        # Every slow socket has sent its first piece and one trickle: on a thread-per-request
        # worker each of them would hold a thread by now.
        assert slow.trickled_within(TRICKLE_EVERY + SLACK)
        # Round after round while they are all open (until well before the first could be cut).
        round_ = 0
        while time.monotonic() < slow.opened + HEAD_BOUND - 4:
            assert answered(f"healthz {round_}", lambda: served.get("/healthz").status) == 200
            status, answer = answered(f"webhook {round_}", lambda: served.post_webhook())
            assert (status, answer) == (200, {"status": "applied"})
            round_ += 1
            slow.stop.wait(0.5)
        kept = served.connection(timeout=4)  # a client keeping its connection: two requests, one socket
        try:
            answered("kept-alive healthz", lambda: (kept.request("GET", "/healthz"), kept.getresponse().read())[1])
            first_socket = kept.sock
            assert answered("kept-alive webhook", lambda: served.post_webhook(kept)) == (200, {"status": "applied"})
            assert kept.sock is first_socket, "the kept-alive connection was not reused"
        finally:
            kept.close()
        assert answered("chunked webhook", lambda: chunked_webhook(served)) == (200, {"status": "applied"})
        assert all(c["cut"] is None for c in slow.clients), f"slow clients were cut before the measurements ended: {timings}"
        worst = {kind: max(seconds for name, (seconds, _) in timings.items() if name.startswith(kind))
                 for kind in ("healthz", "webhook", "kept-alive", "chunked")}
        print(f"\n{round_} rounds under 20 + 20 slow clients; slowest answers (s): {worst}")

        assert slow.all_cut_within(HEAD_BOUND + SLACK), "slow clients still open: " + ", ".join(
            f"{c['kind']} {time.monotonic() - c['opened']:.1f}s" for c in slow.clients if c["cut"] is None)
        lasted = {"head": [], "body": []}
        for client in slow.clients:
            lasted[client["kind"]].append(client["cut"] - client["opened"])
            assert client["answer"].startswith(b"HTTP/1.1 408 "), client["answer"][:200]
        print("slow clients cut after (s):", {kind: (round(min(v), 1), round(max(v), 1)) for kind, v in lasted.items()})
        for kind, bound in (("head", HEAD_BOUND), ("body", BODY_BOUND)):
            assert bound - 1.5 <= min(lasted[kind]) and max(lasted[kind]) <= bound + SLACK, (kind, lasted[kind])
        assert served.get("/healthz").status == 200
    finally:
        slow.close()
    assert served.stop() == 0, served.output()
