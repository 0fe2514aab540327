"""The events API's rules: Standard Webhooks signatures, the event body, and queueing each
`webhook-id` once, in the same transaction as its events (docs/events-api.md)."""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets as pysecrets
import time

import sqlalchemy as sa

from ..errors import RequestError
from ..state.engine import rerun
from ..state.tables import event_ids_table
from ..vault import RotatingSecret
from . import queue

TOLERANCE_SECONDS = 300
MAX_EVENTS = 500
MAX_BODY = 128 * 1024
PREVIOUS_VALID_SECONDS = 24 * 3600
EVENT_MODULES = {"customer.updated": "Contacts", "order.updated": "Deals"}
_DIGITS = re.compile(r"[0-9]{1,19}")  # ASCII digits only: str.isdigit() also takes "²"

class SignatureError(Exception):
    """The request is not signed with a current events secret (message says how)."""

    def __init__(self, message: str, status: int = 401, parameter: str | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.parameter = parameter


# -- signing (pure) -----------------------------------------------------------------------------------
def secret_key(secret: str) -> bytes:
    """The HMAC key of a `whsec_<base64>` secret: its decoded bytes."""
    encoded = secret[len("whsec_"):] if secret.startswith("whsec_") else secret
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("an events secret is whsec_ followed by base64") from None


def sign(secret: str, webhook_id: str, timestamp: int | str, body: bytes) -> str:
    """The `webhook-signature` value for a request: `v1,<base64 HMAC-SHA256>`."""
    content = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify(secrets: list[str], headers, body: bytes, now: float, tolerance: int = TOLERANCE_SECONDS) -> str:
    """Check a Standard Webhooks signature against any of `secrets`; return the webhook-id, or raise
    SignatureError naming the header at fault (400 malformed, 401 out of tolerance or no match)."""
    webhook_id = (headers.get("webhook-id") or "").strip()
    stamp = (headers.get("webhook-timestamp") or "").strip()
    signatures = (headers.get("webhook-signature") or "").strip()
    for name, value in (("webhook-id", webhook_id), ("webhook-timestamp", stamp), ("webhook-signature", signatures)):
        if not value:
            raise SignatureError(f"the {name} header is missing (Standard Webhooks signing)", 400, name)
    if len(webhook_id) > 255:
        raise SignatureError("the webhook-id header is longer than 255 characters", 400, "webhook-id")
    try:
        timestamp = int(stamp)
    except ValueError:
        raise SignatureError("the webhook-timestamp header must be whole seconds since the epoch", 400, "webhook-timestamp") from None
    if abs(now - timestamp) > tolerance:
        raise SignatureError(
            f"the webhook-timestamp is {abs(now - timestamp):.0f} s away from now (more than {tolerance} s): "
            "sign each request when it is sent, and check the sender's clock", 401, "webhook-timestamp")
    expected = [sign(secret, webhook_id, stamp, body).split(",", 1)[1] for secret in secrets]
    for candidate in signatures.split():
        version, _, value = candidate.partition(",")
        if version != "v1":
            continue
        if any(hmac.compare_digest(value.encode(), e.encode()) for e in expected):
            return webhook_id
    raise SignatureError("no webhook-signature matches the events secret (v1, HMAC-SHA256 of id.timestamp.body)",
                         401, "webhook-signature")


def parse_events(body: bytes) -> tuple[dict[str, set[int]], int]:
    """The body → ({module: {ops ids}}, number of events); RequestError names the event at fault."""
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):  # RecursionError: absurdly deep nesting
        raise RequestError("the body must be JSON: an event object or a list of them") from None
    events = data if isinstance(data, list) else [data]
    if not events:
        raise RequestError("the list of events is empty", status=422)
    if len(events) > MAX_EVENTS:
        raise RequestError(f"at most {MAX_EVENTS} events per request, not {len(events)}", status=413)
    wanted: dict[str, set[int]] = {}
    for n, event in enumerate(events):
        where = f"[{n}]" if isinstance(data, list) else ""
        if not isinstance(event, dict):
            raise RequestError("an event must be an object with type and id", status=422, parameter=where or "body")
        kind = event.get("type")
        if not isinstance(kind, str) or kind not in EVENT_MODULES:
            raise RequestError(f"type must be one of {', '.join(EVENT_MODULES)}", status=422, parameter=f"{where}.type".lstrip("."))
        ops_id = event.get("id")
        if isinstance(ops_id, str) and _DIGITS.fullmatch(ops_id):
            ops_id = int(ops_id)
        if isinstance(ops_id, bool) or not isinstance(ops_id, int) or not 0 < ops_id < 2**63:
            raise RequestError("id must be a positive whole number (the OnPrintShop id)", status=422,
                               parameter=f"{where}.id".lstrip("."))
        wanted.setdefault(EVENT_MODULES[kind], set()).add(ops_id)
    return wanted, len(events)


# -- the secret ------------------------------------------------------------------------------------
def _new_secret() -> str:
    return "whsec_" + base64.b64encode(pysecrets.token_bytes(32)).decode()


SECRET = RotatingSecret("events.secret", _new_secret, PREVIOUS_VALID_SECONDS)


def events_secret(rt) -> str:
    """The current events secret (`whsec_<base64>`), made on first use."""
    return SECRET.read(rt)[0]


def events_secrets(rt) -> dict:
    """{current, previous, previous_expires_at, previous_all} for the admin page (as the webhook secret's)."""
    return SECRET.shown(*SECRET.read(rt))


def rotate_events_secret(rt) -> str:
    """A new events secret; the previous one stays valid for 24 hours. Returns the new one."""
    return SECRET.rotate(rt)


def revoke_previous_events_secrets(rt) -> int:
    """End the grace of every replaced events secret now; returns how many ended."""
    return SECRET.revoke_previous(rt)


def valid_secrets(rt) -> list[str]:
    current, previous = SECRET.read(rt)
    return [current] + [secret for secret, _expires in previous]


# -- replay protection -------------------------------------------------------------------------------
class _Repeated(Exception):
    """The webhook-id is already in gw_event_ids (raised inside the transaction to roll it back)."""


def accept(rt, webhook_id: str, wanted: dict[str, set[int]]) -> bool:
    """Remember the webhook-id and queue the events in ONE transaction (else a retry after a lost
    commit would be refused as a repeat and the events lost); False when it was accepted before."""
    now = time.time()

    def work(conn):
        try:
            conn.execute(event_ids_table.insert().values(webhook_id=webhook_id, received_at=now))
        except sa.exc.IntegrityError:
            raise _Repeated() from None
        for module, ids in wanted.items():
            queue.enqueue_in(conn, rt.store, module, ids)

    try:
        # Another process may queue one of these records meanwhile: run it all again (merging).
        rerun(lambda: rt.store.transaction(work), attempts=5,
              when=lambda exc: isinstance(exc, sa.exc.IntegrityError) and not isinstance(exc, _Repeated))
    except _Repeated:
        return False
    if pysecrets.randbelow(50) == 0:  # now and then: older ids can no longer pass the timestamp check
        try:
            with rt.store.begin() as conn:
                conn.execute(event_ids_table.delete().where(event_ids_table.c.received_at < now - 4 * TOLERANCE_SECONDS))
        except sa.exc.SQLAlchemyError:
            pass  # the events are queued; the hourly retention purge drops old ids anyway
    return True


def remember_id(rt, webhook_id: str) -> bool:
    """Store a webhook-id with no events; False when it was accepted before."""
    return accept(rt, webhook_id, {})


def receive(rt, headers, body: bytes, now: float) -> tuple[dict, int]:
    """A signed request → (answer, HTTP status). A validly signed body that cannot be used is
    refused (4xx) and its webhook-id kept, so the sender's retries are answered "duplicate"."""
    try:
        webhook_id = verify(valid_secrets(rt), headers, body, now)
    except SignatureError as exc:
        raise RequestError(exc.message, status=exc.status, parameter=exc.parameter) from None
    try:
        wanted, count = parse_events(body)
    except RequestError:
        if not remember_id(rt, webhook_id):
            return DUPLICATE
        raise
    if not accept(rt, webhook_id, wanted):
        # A sender retries whatever it did not see answered 2xx: a repeat is a success that queues nothing.
        return DUPLICATE
    return {"status": "accepted", "count": count}, 202


DUPLICATE = ({"status": "duplicate", "count": 0}, 200)


def purge_seen_ids(rt, older_than_epoch: float) -> int:
    """Drop remembered webhook-ids no request can reuse any more (past the tolerance, or the retention)."""
    cutoff = max(older_than_epoch, time.time() - 4 * TOLERANCE_SECONDS)
    with rt.store.begin() as conn:
        return conn.execute(event_ids_table.delete().where(event_ids_table.c.received_at < cutoff)).rowcount
