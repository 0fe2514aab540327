"""The webhook secret Zoho sends in `X-Webhook-Token` (Zoho does not sign webhooks): kept in the
vault, rotated with a grace period for each replaced one, checked in constant time."""
from __future__ import annotations

import hmac
import os
import secrets as pysecrets
import threading
import time
import weakref

from ..vault import RotatingSecret

GRACE_SECONDS = 24 * 3600
SECRET_BYTES = 32  # token_urlsafe(32) gives 43 URL-safe characters
MAX_TOKEN_LENGTH = 256
# Each process keeps the decrypted secrets this long, so a delivery costs no vault read. A
# rotation made in another process is seen within this time (the old secret stays valid anyway).
CACHE_SECONDS = 5.0

_cache: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # Store → (loaded, current, [(previous, expires)])
_cache_lock = threading.Lock()

ENDPOINTS = ("contacts", "deals")


def clock() -> float:
    """Now, in epoch seconds (tests move it)."""
    return time.time()


def new_secret() -> str:
    return pysecrets.token_urlsafe(SECRET_BYTES)


# `clock` is looked up at each call, so tests that move it move the secret's grace period too.
SECRET = RotatingSecret("webhook.secret", new_secret, GRACE_SECONDS, clock=lambda: clock())


def webhook_secrets(rt) -> dict:
    """{current, previous, previous_expires_at, previous_all}; creates the first secret when there
    is none. `previous` is the newest replaced one still valid; `previous_all` lists every one
    still valid as {secret, expires_at}, newest first."""
    current, previous = SECRET.read(rt)
    entry = _cache.get(rt.store)
    if entry is not None and entry[1] != current:  # just made here: checks must not wait for the cache
        _forget(rt)
    return SECRET.shown(current, previous)


def rotate_webhook_secret(rt) -> str:
    """Make a new secret; the one it replaces stays valid for 24 hours. Returns the new one."""
    fresh = SECRET.rotate(rt)
    _forget(rt)
    return fresh


def revoke_previous_webhook_secrets(rt) -> int:
    """End the grace of every replaced webhook secret now; returns how many ended."""
    ended = SECRET.revoke_previous(rt)
    _forget(rt)
    return ended


def check_webhook_token(rt, given: str | None) -> bool:
    """Is `given` the current secret, or the previous one within its grace period? Constant time."""
    if not given or len(given) > MAX_TOKEN_LENGTH:
        return False
    try:
        candidate = given.encode("utf-8")
    except UnicodeEncodeError:
        return False
    current, previous = _cached(rt)
    ok = False
    # Compare against every one whatever happens, so timing does not tell which one matched.
    if current is not None:
        ok |= hmac.compare_digest(candidate, current.encode("utf-8"))
    now = clock()
    for secret, expires in previous:
        ok |= hmac.compare_digest(candidate, secret.encode("utf-8")) and now < expires
    return bool(ok)


def _cached(rt) -> tuple[str | None, list[tuple[str, float]]]:
    key = rt.store
    entry = _cache.get(key)
    now = time.monotonic()
    if entry is not None and now - entry[0] < CACHE_SECONDS:
        return entry[1], entry[2]
    current, previous = SECRET.read(rt, create=False)
    with _cache_lock:
        _cache[key] = (now, current, previous)
    return current, previous


def _forget(rt) -> None:
    with _cache_lock:
        _cache.pop(rt.store, None)


def base_url(rt, request_root: str | None = None) -> str:
    """GATEWAY_PUBLIC_URL, else the current request's root, else the local development address."""
    public = rt.config.get("GATEWAY_PUBLIC_URL")
    if public:
        return str(public).rstrip("/")
    if request_root:
        return request_root.rstrip("/")
    return f"http://127.0.0.1:{os.environ.get('PORT', '8000')}"


def webhook_urls(rt_or_base) -> dict[str, str]:
    """{"contacts": full URL, "deals": full URL}: what the admin pastes into Zoho's webhooks."""
    base = rt_or_base.rstrip("/") if isinstance(rt_or_base, str) else base_url(rt_or_base)
    return {name: f"{base}/webhooks/zoho/{name}" for name in ENDPOINTS}
