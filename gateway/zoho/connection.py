"""The Zoho connection as stored: non-secret fields in the setting `zoho.connection`, credentials
and tokens only in the vault. Each save is a new `generation`, so a refresh in flight for an old
connection cannot overwrite a new one (docs/zoho.md)."""
from __future__ import annotations

import time

from .datacenters import DATA_CENTER_NAMES, accounts_url, api_url
from ..vault import VaultError

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
    try:
        with rt.store.engine.connect() as conn:
            rt.vault.get(conn, SECRET_REFRESH_TOKEN)
    except VaultError as exc:
        return str(exc)
    return None


def update_fields(store, generation: str, changes: dict, *, vault=None, access_token: str | None = None) -> bool:
    """Change the stored connection's fields if it is still `generation`; False when it was replaced
    (read locked: a concurrent save waits, or is seen, never mixed)."""
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
    """Everything the page shows about the connection (credentials only as their last four
    characters; times in epoch seconds), plus `pending`: the redirect flow's saved form, or None."""
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


def pending(rt) -> dict | None:
    return rt.store.get_setting(PENDING_SETTING, None)
