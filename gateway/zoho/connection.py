"""The Zoho connection: what the admin saved, the tokens Zoho gave for it, and its state.

Owns `configure()` (the configuration page's save and `flask --app wsgi configure`),
`state()`, `status()`, `disconnect()`, `update()`, `account_id()`, `modules()` and the pending
form the redirect flow (/admin/zoho/connect) starts from.

Storage: the non-secret parts (data center, API domain, Account ID, modules, times, last four
characters of each credential) are one JSON setting, `zoho.connection`, in gw_settings; the
Client ID, Client Secret, refresh token, access token and the grant token while it is being
exchanged are only in the vault (gw_secrets, Fernet-encrypted). A save first exchanges the grant
token, and only when Zoho says yes replaces the stored connection in one transaction, so a
failed save leaves the working connection exactly as it was; then the replaced refresh token is
revoked at Zoho (a user may hold only 20). Every save gets a new `generation`, so a token
refresh that was in flight for the old connection cannot overwrite the new one.
"""
from __future__ import annotations

import logging
import re
import secrets as pysecrets
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from ..vault import last4
from . import oauth
from .datacenters import DATA_CENTER_NAMES, DATA_CENTERS, UnknownDataCenter, accounts_url, api_url, check_code, trusted_accounts_server
from .errors import ZohoError

log = logging.getLogger("gateway.zoho")

__all__ = [
    "DATA_CENTERS", "DATA_CENTER_NAMES", "MODULES", "Result", "configure", "state", "status", "disconnect",
    "update", "account_id", "modules", "save_pending", "pending", "redirect_credentials",
]

MODULES = ("contacts", "deals")
CONNECTED = "connected"
NEEDS_REAUTHORIZATION = "needs_reauthorization"
NOT_CONFIGURED = "not_configured"

SETTING = "zoho.connection"
PENDING_SETTING = "zoho.pending"
LAST_ERROR_SETTING = "zoho.last_error"

SECRET_CLIENT_ID = "zoho.client_id"
SECRET_CLIENT_SECRET = "zoho.client_secret"
SECRET_REFRESH_TOKEN = "zoho.refresh_token"
SECRET_ACCESS_TOKEN = "zoho.access_token"
PENDING_CLIENT_ID = "zoho.pending.client_id"
PENDING_CLIENT_SECRET = "zoho.pending.client_secret"
PENDING_GRANT_TOKEN = "zoho.pending.grant_token"
LIVE_SECRETS = (SECRET_CLIENT_ID, SECRET_CLIENT_SECRET, SECRET_REFRESH_TOKEN, SECRET_ACCESS_TOKEN)
PENDING_SECRETS = (PENDING_CLIENT_ID, PENDING_CLIENT_SECRET, PENDING_GRANT_TOKEN)

ACCOUNT_ID_RE = re.compile(r"^[0-9]{5,30}$")
MAX_CREDENTIAL = 500


@dataclass(frozen=True)
class Result:
    """What a save, disconnect or update did: `ok`, and a message to show the admin as is."""

    ok: bool
    message: str

    def __bool__(self) -> bool:
        return self.ok


class FormError(ValueError):
    """A field of the Zoho form is wrong; the message starts with the field's name."""


# -- validation (pure) ------------------------------------------------------------------------

def normalize_modules(values) -> tuple[str, ...]:
    chosen = []
    for value in values or ():
        name = str(value).strip().lower()
        if name not in MODULES:
            raise FormError(f"modules: {value!r} is not a module the gateway syncs; choose from {', '.join(MODULES)}")
        if name not in chosen:
            chosen.append(name)
    return tuple(name for name in MODULES if name in chosen)


def _credential(field: str, value, label: str) -> str:
    value = (value or "").strip()
    if not value:
        raise FormError(f"{field}: the {label} is required")
    if len(value) > MAX_CREDENTIAL or any(ch.isspace() for ch in value):
        raise FormError(f"{field}: the {label} does not look right (copy it again from Zoho, without spaces)")
    return value


def validate_account_id(value) -> str:
    value = (value or "").strip()
    if not ACCOUNT_ID_RE.match(value):
        raise FormError(
            "account_id: the Account ID is the long number at the end of a Zoho CRM Account record's URL "
            "(open the Account in Zoho CRM: …/tab/Accounts/<Account ID>)"
        )
    return value


def validate_redirect_uri(value) -> str | None:
    value = (value or "").strip()
    if not value:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or len(value) > 500:
        raise FormError("redirect_uri: give the full URL registered with the client, e.g. https://gateway.example.com/admin/zoho/callback")
    return value


def validate_data_center(value) -> str:
    try:
        return check_code(value)
    except UnknownDataCenter as exc:
        raise FormError(f"data_center: {exc}") from None


# -- reading ----------------------------------------------------------------------------------

def load(store, conn=None, for_update: bool = False) -> dict | None:
    """The stored connection's non-secret fields (a dict), or None when there is none."""
    return store.get_setting(SETTING, None, conn=conn, for_update=for_update)


def load_with_access_token(store, vault) -> tuple[dict | None, str | None]:
    """The connection and its current access token, read together (one consistent view)."""
    with store.begin() as conn:
        info = load(store, conn)
        if info is None:
            return None, None
        return info, vault.get(conn, SECRET_ACCESS_TOKEN)


def refresh_credentials(store, vault) -> tuple[dict | None, dict]:
    """The connection and what a refresh needs: client id, client secret, refresh token."""
    with store.begin() as conn:
        info = load(store, conn)
        if info is None:
            return None, {}
        return info, {
            "client_id": vault.get(conn, SECRET_CLIENT_ID),
            "client_secret": vault.get(conn, SECRET_CLIENT_SECRET),
            "refresh_token": vault.get(conn, SECRET_REFRESH_TOKEN),
        }


def unreadable_secrets(rt) -> str | None:
    """None when the stored refresh token decrypts with GATEWAY_FERNET_KEYS, else why not (no secret in it)."""
    from ..vault import VaultError

    try:
        with rt.store.engine.connect() as conn:
            rt.vault.get(conn, SECRET_REFRESH_TOKEN)
    except VaultError as exc:
        return str(exc)
    return None


def update_fields(store, generation: str, changes: dict, *, vault=None, access_token: str | None = None) -> bool:
    """Change the stored connection's fields if it is still `generation`; False when it was replaced.

    The row is read locked: a save that commits a new generation meanwhile waits for this
    transaction, or this one sees the new generation, never a mix of the two."""
    with store.immediate() as conn:
        info = load(store, conn, for_update=True)
        if info is None or info.get("generation") != generation:
            return False
        info.update(changes)
        store.set_setting(SETTING, info, conn=conn)
        if access_token is not None:
            vault.put(conn, SECRET_ACCESS_TOKEN, access_token)
    return True


def record_error(store, message: str | None, conn=None) -> None:
    """Remember (or, with None, clear) the latest Zoho failure for the page and /readyz."""
    value = None if message is None else {"message": message, "at": time.time()}
    if conn is None:
        with store.immediate() as c:
            _write_error(store, value, c)
    else:
        _write_error(store, value, conn)


def _write_error(store, value, conn) -> None:
    if value is None:
        store.delete_setting(LAST_ERROR_SETTING, conn)
    else:
        store.set_setting(LAST_ERROR_SETTING, value, conn=conn)


# -- the public interface ---------------------------------------------------------------------

def state(rt) -> str:
    """The connection's state: connected, needs_reauthorization or not_configured."""
    info = load(rt.store)
    if info is None:
        return NOT_CONFIGURED
    return info.get("state", CONNECTED)


def account_id(rt) -> str | None:
    """The Zoho Account record every synced Contact and Deal is attached to (None: not connected)."""
    info = load(rt.store)
    return None if info is None else info.get("account_id")


def modules(rt) -> tuple[str, ...]:
    """The modules to sync, a subset of ("contacts", "deals"); empty when not connected."""
    info = load(rt.store)
    return () if info is None else tuple(info.get("modules") or ())


def status(rt) -> dict:
    """Everything the page shows about the connection; credentials only as their last four characters.

    Keys: state, data_center, data_center_name, accounts_url, api_domain, api_url, account_id,
    modules, redirect_uri, client_id_last4, refresh_token_last4, access_token_last4,
    access_expires_at, last_refresh_at, connected_at, refresh_blocked_until, last_error,
    last_error_at, pending (a form saved for the redirect flow: its data_center, account_id,
    client_id_last4, or None). Times are epoch seconds (None when unknown).
    """
    with rt.store.begin() as conn:
        info = load(rt.store, conn)
        error = rt.store.get_setting(LAST_ERROR_SETTING, None, conn=conn)
        pending_info = rt.store.get_setting(PENDING_SETTING, None, conn=conn)
    info = info or {}
    dc = info.get("data_center")
    result = {
        "state": info.get("state", CONNECTED) if info else NOT_CONFIGURED,
        "data_center": dc,
        "data_center_name": DATA_CENTER_NAMES.get(dc) if dc else None,
        "accounts_url": accounts_url(rt.config, dc, info.get("accounts_server")) if dc else None,
        "api_domain": info.get("api_domain"),
        "api_url": api_url(rt.config, dc, info.get("api_domain")) if dc else None,
        "account_id": info.get("account_id"),
        "modules": list(info.get("modules") or []),
        "redirect_uri": info.get("redirect_uri"),
        "client_id_last4": info.get("client_id_last4", ""),
        "refresh_token_last4": info.get("refresh_token_last4", ""),
        "access_token_last4": info.get("access_token_last4", ""),
        "access_expires_at": info.get("access_expires_at"),
        "last_refresh_at": info.get("last_refresh_at"),
        "connected_at": info.get("connected_at"),
        "refresh_blocked_until": info.get("refresh_blocked_until"),
        "last_error": (error or {}).get("message"),
        "last_error_at": (error or {}).get("at"),
        "pending": None,
    }
    if pending_info:
        result["pending"] = {k: pending_info.get(k) for k in ("data_center", "account_id", "client_id_last4", "redirect_uri", "modules")}
    return result


def _validated_form(rt, data_center, client_id, client_secret, account_id, redirect_uri, modules):
    """The fields the save and the redirect flow share, checked; raises FormError naming the field.

    An empty Client Secret reuses the stored one when the Client ID is the stored one.
    """
    dc = validate_data_center(data_center)
    client_id = _credential("client_id", client_id, "Client ID")
    account = validate_account_id(account_id)
    redirect = validate_redirect_uri(redirect_uri)
    chosen = normalize_modules(modules)
    if not chosen:
        raise FormError("modules: choose at least one module to sync (contacts, deals)")
    if client_secret and str(client_secret).strip():
        secret = _credential("client_secret", client_secret, "Client Secret")
    else:
        secret = _stored_secret_for(rt, client_id)
        if secret is None:
            raise FormError("client_secret: the Client Secret is required")
    return dc, client_id, secret, account, redirect, chosen


def configure(rt, *, data_center, client_id, client_secret, grant_token, account_id, redirect_uri=None,
              modules=MODULES, accounts_server=None) -> Result:
    """Save the Zoho settings and exchange the grant token at once (the page's save, the CLI's configure).

    `client_secret` may be left empty when `client_id` is the stored connection's (or the saved
    pending form's): the stored secret is used. `accounts_server` is the server Zoho named in the
    redirect flow's callback. Returns Result(ok, message); never raises for a Zoho failure or a
    bad field: the message says what was wrong and what to do, and the previous connection stays
    exactly as it was. A success replacing another refresh token revokes that one at Zoho.
    """
    try:
        dc, client_id, secret, account, redirect, chosen = _validated_form(
            rt, data_center, client_id, client_secret, account_id, redirect_uri, modules)
        grant_token = _credential("grant_token", grant_token, "Grant Token")
        server = None
        if accounts_server:
            server = trusted_accounts_server(rt.config, accounts_server)
            if server is None:
                raise FormError(f"accounts-server: {accounts_server[:100]!r} is not a Zoho accounts server; connect again")
    except FormError as exc:
        return Result(False, str(exc))

    token_url = accounts_url(rt.config, dc, server)
    # The grant token is kept (encrypted) only while it is being exchanged.
    with rt.store.immediate() as conn:
        rt.vault.put(conn, PENDING_GRANT_TOKEN, grant_token)
    try:
        answer = oauth.exchange_grant(token_url, client_id=client_id, client_secret=secret, code=grant_token,
                                      redirect_uri=redirect)
        if not answer.refresh_token:
            raise ZohoError("Zoho gave no refresh token: make a new grant token (a Self Client's always gives one; "
                            "the redirect flow asks for offline access with consent) and save again", code="no_refresh_token")
    except ZohoError as exc:
        message = str(exc)
        with rt.store.immediate() as conn:
            rt.vault.delete(conn, PENDING_GRANT_TOKEN)
            record_error(rt.store, f"save failed: {message}", conn=conn)
        log.warning("zoho save failed, previous connection kept: %s", message)
        return Result(False, message)

    now = time.time()
    info = {
        "generation": pysecrets.token_hex(8),
        "state": CONNECTED,
        "data_center": dc,
        "accounts_server": server,
        "api_domain": answer.api_domain or DATA_CENTERS[dc][1],
        "account_id": account,
        "modules": list(chosen),
        "redirect_uri": redirect,
        "connected_at": now,
        "last_refresh_at": now,
        "access_expires_at": now + answer.expires_in,
        "refresh_blocked_until": None,
        "refresh_failures": 0,
        "client_id_last4": last4(client_id),
        "refresh_token_last4": last4(answer.refresh_token),
        "access_token_last4": last4(answer.access_token),
    }
    with rt.store.immediate() as conn:
        old = load(rt.store, conn, for_update=True)
        old_refresh = rt.vault.get(conn, SECRET_REFRESH_TOKEN) if old else None
        old_accounts = accounts_url(rt.config, old["data_center"], old.get("accounts_server")) if old else None
        rt.vault.put(conn, SECRET_CLIENT_ID, client_id)
        rt.vault.put(conn, SECRET_CLIENT_SECRET, secret)
        rt.vault.put(conn, SECRET_REFRESH_TOKEN, answer.refresh_token)
        rt.vault.put(conn, SECRET_ACCESS_TOKEN, answer.access_token)
        rt.store.set_setting(SETTING, info, conn=conn)
        for name in PENDING_SECRETS:
            rt.vault.delete(conn, name)
        rt.store.delete_setting(PENDING_SETTING, conn)
        record_error(rt.store, None, conn=conn)
    log.info("zoho connected: data center %s, api %s, client %s, refresh token %s", dc, info["api_domain"],
             info["client_id_last4"], info["refresh_token_last4"])

    message = f"connected to Zoho CRM ({dc}, {info['api_domain']}) at {_utc(now)}"
    if old_refresh and old_refresh != answer.refresh_token:
        try:
            oauth.revoke(old_accounts, old_refresh)
            message += "; the previous refresh token was revoked at Zoho"
        except ZohoError as exc:
            if old.get("state") == NEEDS_REAUTHORIZATION:
                message += "; the previous refresh token no longer worked anyway"
            else:
                note = f"the previous refresh token could not be revoked ({exc}); revoke it in Zoho's API console"
                record_error(rt.store, note)
                log.warning("zoho: %s", note)
                message += f"; {note}"
    return Result(True, message)


def update(rt, *, account_id=None, modules=None) -> Result:
    """Change the Account ID and/or the synced modules of the stored connection (no new grant token needed)."""
    info = load(rt.store)
    if info is None:
        return Result(False, "Zoho is not connected yet: save the Zoho settings with a grant token first")
    changes = {}
    try:
        if account_id is not None:
            changes["account_id"] = validate_account_id(account_id)
        if modules is not None:
            chosen = normalize_modules(modules)
            if not chosen:
                raise FormError("modules: choose at least one module to sync (contacts, deals)")
            changes["modules"] = list(chosen)
    except FormError as exc:
        return Result(False, str(exc))
    if not update_fields(rt.store, info["generation"], changes):
        return Result(False, "the Zoho connection changed meanwhile; reload the page and try again")
    return Result(True, "Zoho settings updated")


def disconnect(rt) -> Result:
    """Forget the connection and its tokens, and revoke the refresh token at Zoho."""
    with rt.store.immediate() as conn:
        info = load(rt.store, conn, for_update=True)
        refresh_token = rt.vault.get(conn, SECRET_REFRESH_TOKEN) if info else None
        for name in LIVE_SECRETS + PENDING_SECRETS:
            rt.vault.delete(conn, name)
        for name in (SETTING, PENDING_SETTING, LAST_ERROR_SETTING):
            rt.store.delete_setting(name, conn)
    if info is None:
        return Result(True, "Zoho was not connected")
    log.info("zoho disconnected (refresh token %s)", info.get("refresh_token_last4"))
    if not refresh_token:
        return Result(True, "disconnected from Zoho")
    try:
        oauth.revoke(accounts_url(rt.config, info["data_center"], info.get("accounts_server")), refresh_token)
    except ZohoError as exc:
        return Result(True, f"disconnected; the tokens are forgotten, but Zoho could not revoke the refresh token "
                            f"({exc}): revoke it in Zoho's API console")
    return Result(True, "disconnected from Zoho; the refresh token was revoked")


# -- the pending form (redirect flow) ---------------------------------------------------------

def save_pending(rt, *, data_center, client_id, client_secret, account_id, redirect_uri=None, modules=MODULES) -> Result:
    """Keep a form for the redirect flow (/admin/zoho/connect) without touching the live connection.

    The admin page calls this when the admin chooses "connect through Zoho" instead of pasting a
    grant token; /admin/zoho/connect then starts from it. An empty secret reuses the stored one
    for the same Client ID.
    """
    try:
        dc, client_id, secret, account, redirect, chosen = _validated_form(
            rt, data_center, client_id, client_secret, account_id, redirect_uri, modules)
    except FormError as exc:
        return Result(False, str(exc))
    with rt.store.immediate() as conn:
        rt.vault.put(conn, PENDING_CLIENT_ID, client_id)
        rt.vault.put(conn, PENDING_CLIENT_SECRET, secret)
        rt.store.set_setting(PENDING_SETTING, {
            "data_center": dc, "account_id": account, "redirect_uri": redirect, "modules": list(chosen),
            "client_id_last4": last4(client_id), "saved_at": time.time(),
        }, conn=conn)
    return Result(True, "saved; continue at Zoho to allow access")


def pending(rt) -> dict | None:
    return rt.store.get_setting(PENDING_SETTING, None)


def redirect_credentials(rt) -> dict | None:
    """What the redirect flow needs: the pending form if one was saved, else the stored connection.

    A dict with data_center, client_id, client_secret, account_id, modules, redirect_uri, source
    ("pending" or "connection"); None when neither exists.
    """
    with rt.store.begin() as conn:
        form = rt.store.get_setting(PENDING_SETTING, None, conn=conn)
        if form:
            client_id = rt.vault.get(conn, PENDING_CLIENT_ID)
            secret = rt.vault.get(conn, PENDING_CLIENT_SECRET)
            source = "pending"
        else:
            form = load(rt.store, conn)
            if not form:
                return None
            client_id = rt.vault.get(conn, SECRET_CLIENT_ID)
            secret = rt.vault.get(conn, SECRET_CLIENT_SECRET)
            source = "connection"
    if not client_id or not secret:
        return None
    return {
        "data_center": form["data_center"], "client_id": client_id, "client_secret": secret,
        "account_id": form.get("account_id"), "modules": tuple(form.get("modules") or MODULES),
        "redirect_uri": form.get("redirect_uri"), "source": source,
    }


def _stored_secret_for(rt, client_id: str) -> str | None:
    with rt.store.begin() as conn:
        for id_name, secret_name in ((SECRET_CLIENT_ID, SECRET_CLIENT_SECRET), (PENDING_CLIENT_ID, PENDING_CLIENT_SECRET)):
            if rt.vault.get(conn, id_name) == client_id:
                return rt.vault.get(conn, secret_name)
    return None


def _utc(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(epoch))
