"""Admin login policy: which password hash counts, the failed-login throttle, sessions, safe
redirects (docs/security.md)."""
from __future__ import annotations

import hashlib
import logging
import hmac
import secrets as pysecrets
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from werkzeug.security import check_password_hash, generate_password_hash

from .. import audit

MAX_FAILURES = 5           # per client address per WINDOW_SECONDS
GLOBAL_MAX_FAILURES = 30   # from every address together: many addresses do not buy more guesses
WINDOW_SECONDS = 60.0
ADMIN_PASSWORD_SETTING = "admin.password_hash"
WRONG_PASSWORD = "That password is not right. Try again."

_dummy_hash: str | None = None


def _dummy() -> str:
    """A hash of a random password, made with Werkzeug's default method (as real ones are)."""
    global _dummy_hash
    if _dummy_hash is None:
        _dummy_hash = generate_password_hash(pysecrets.token_urlsafe(16))
    return _dummy_hash


def password_hash(rt) -> str | None:
    """The hash that logins are checked against, or None when no password is set."""
    return rt.config.get("GATEWAY_ADMIN_PASSWORD_HASH") or rt.store.get_setting(ADMIN_PASSWORD_SETTING)


def check_password(rt, given: str) -> bool:
    stored = password_hash(rt)
    if not stored:
        check_password_hash(_dummy(), given or "")  # same work as a real check: no timing tell
        return False
    try:
        return check_password_hash(stored, given or "")
    except ValueError:  # a malformed hash in the environment: nobody gets in, the log says why
        logging.getLogger("gateway.admin").error("GATEWAY_ADMIN_PASSWORD_HASH is not a Werkzeug password hash")
        return False


@dataclass(frozen=True)
class Throttle:
    blocked: bool
    retry_after: int  # seconds until the next attempt is allowed (0 when not blocked)
    everyone: bool = False  # blocked by the deployment-wide cap, not this address's own failures


def throttle_for(failure_times: list[float], now: float, limit: int = MAX_FAILURES) -> Throttle:
    """Pure rule: blocked while `limit` failures fall within the last `WINDOW_SECONDS`."""
    recent = sorted(t for t in failure_times if t > now - WINDOW_SECONDS)
    if len(recent) < limit:
        return Throttle(False, 0)
    # The attempt is allowed again once the oldest of the last `limit` leaves the window.
    oldest_that_counts = recent[-limit]
    return Throttle(True, max(1, int(oldest_that_counts + WINDOW_SECONDS - now + 0.999)))


def _judge(rt, address: str, now: float, exclude_id: int | None = None) -> Throttle:
    since = now - WINDOW_SECONDS
    mine = throttle_for(audit.login_failures_since(rt, address, since, exclude_id), now)
    if mine.blocked:
        return mine
    everyone = throttle_for(audit.login_failures_since(rt, None, since, exclude_id, limit=GLOBAL_MAX_FAILURES), now,
                            GLOBAL_MAX_FAILURES)
    return Throttle(True, everyone.retry_after, everyone=True) if everyone.blocked else everyone


@dataclass(frozen=True)
class Attempt:
    id: int | None  # None: refused before anything was written
    throttle: Throttle


def start_attempt(rt, address: str, now: float | None = None) -> Attempt:
    """Refuse an attempt the committed failures already block (no write), else record it (as a
    failure until withdrawn) BEFORE its password is checked and judge it against the others, so
    parallel guesses cannot all pass the count (docs/security.md)."""
    now = time.time() if now is None else now
    already = _judge(rt, address, now)
    if already.blocked:
        return Attempt(None, already)  # refused on what is committed: costs no write at all
    attempt_id = audit.note_login_attempt(rt, address, now)
    return Attempt(attempt_id, _judge(rt, address, now, exclude_id=attempt_id))


def store_password(rt, password: str) -> None:
    """Store a salted hash of a new admin password (every session made with the old one ends)."""
    rt.store.set_setting(ADMIN_PASSWORD_SETTING, generate_password_hash(password))


def withdraw(rt, attempt: Attempt) -> None:
    """The attempt was no failure (right password) or was refused unchecked: it does not count."""
    if attempt.id is not None:
        audit.forget_login_attempt(rt, attempt.id)


# -- sessions ------------------------------------------------------------------------------------
def password_fingerprint(secret_key, stored_hash: str) -> str:
    """A short digest of the password hash in force, keyed with SECRET_KEY, kept in the session: a new
    password ends every session made with the old one (docs/security.md, "Sessions")."""
    key = secret_key.encode() if isinstance(secret_key, str) else bytes(secret_key or b"")
    return hmac.new(key, stored_hash.encode(), hashlib.sha256).hexdigest()[:16]


def open_session(rt, session, secret_key, now: float | None = None) -> None:
    """Make `session` a fresh admin session (nothing from before the login survives it)."""
    session.clear()
    session["admin"] = True
    session["login_at"] = time.time() if now is None else now
    session["sid"] = pysecrets.token_urlsafe(18)  # names the session for a logout that holds server-side
    session["pw"] = password_fingerprint(secret_key, password_hash(rt) or "")
    session.permanent = True


def session_is_current(rt, session, secret_key, lifetime_seconds: float, now: float | None = None) -> bool:
    """Logged in, within its lifetime, made with the password in force, and not logged out."""
    now = time.time() if now is None else now
    if not session.get("admin") or session.get("login_at", 0) + lifetime_seconds < now:
        return False
    stored = password_hash(rt)
    given = session.get("pw")
    if not stored or not isinstance(given, str) or not hmac.compare_digest(given, password_fingerprint(secret_key, stored)):
        return False
    sid = session.get("sid")
    return isinstance(sid, str) and bool(sid) and not audit.session_ended(rt, sid)


def close_session(rt, session, lifetime_seconds: float) -> None:
    """Log out: this session's id is remembered as ended (a copy of its cookie is refused too)."""
    sid = session.get("sid")
    if isinstance(sid, str) and sid:
        audit.end_session(rt, sid, until=float(session.get("login_at", 0)) + lifetime_seconds)
    session.clear()


def safe_next(target: str | None, default: str) -> str:
    """A redirect target after login: only a path on this site under /admin, else `default`."""
    if not target:
        return default
    target = target.strip()
    if "\\" in target or any(ord(c) < 32 for c in target):
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith("/admin") or target.startswith("//"):
        return default
    if target.endswith("?"):  # login_required's `full_path` adds a bare "?"
        target = target[:-1]
    return target
