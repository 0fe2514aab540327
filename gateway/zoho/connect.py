"""Connecting Zoho: save and exchange the grant token at once, change Account ID or modules,
disconnect, keep the redirect flow's form. A failed save leaves the working connection as it
was; a successful one revokes the refresh token it replaced (docs/zoho.md, "What a save does")."""
from __future__ import annotations

import logging
import secrets as pysecrets
import time

from ..results import Result
from ..vault import last4
from . import oauth
from .connection import (CONNECTED, LIVE_SECRETS, NEEDS_REAUTHORIZATION, PENDING_CLIENT_ID, PENDING_CLIENT_SECRET,
                         PENDING_GRANT_TOKEN, PENDING_SECRETS, PENDING_SETTING, SECRET_ACCESS_TOKEN,
                         SECRET_CLIENT_ID, SECRET_CLIENT_SECRET, SECRET_REFRESH_TOKEN, SETTING, LAST_ERROR_SETTING,
                         load, record_error, update_fields)
from .datacenters import DATA_CENTERS, accounts_url, trusted_accounts_server
from .errors import ZohoError
from .validation import (MODULES, FormError, credential, normalize_modules, validate_account_id,
                         validate_data_center, validate_redirect_uri)

log = logging.getLogger("gateway.zoho")


def _validated_form(rt, data_center, client_id, client_secret, account_id, redirect_uri, modules):
    """The fields the save and the redirect flow share, checked (FormError names the field); an
    empty Client Secret reuses the stored one for the same Client ID."""
    dc = validate_data_center(data_center)
    client_id = credential("client_id", client_id, "Client ID")
    account = validate_account_id(account_id)
    redirect = validate_redirect_uri(redirect_uri)
    chosen = normalize_modules(modules)
    if not chosen:
        raise FormError("modules: choose at least one module to sync (contacts, deals)")
    if client_secret and str(client_secret).strip():
        secret = credential("client_secret", client_secret, "Client Secret")
    else:
        secret = _stored_secret_for(rt, client_id)
        if secret is None:
            raise FormError("client_secret: the Client Secret is required")
    return dc, client_id, secret, account, redirect, chosen


def configure(rt, *, data_center, client_id, client_secret, grant_token, account_id, redirect_uri=None,
              modules=MODULES, accounts_server=None, own_accounts_server=None) -> Result:
    """Save the Zoho settings and exchange the grant token at once (the page's save, `configure`).
    `accounts_server`: the one Zoho named in the redirect flow; `own_accounts_server`: one the gateway
    chose itself (its development simulator). Failures are a Result saying what to do, never raised."""
    try:
        dc, client_id, secret, account, redirect, chosen = _validated_form(
            rt, data_center, client_id, client_secret, account_id, redirect_uri, modules)
        grant_token = credential("grant_token", grant_token, "Grant Token")
        server = own_accounts_server.rstrip("/") if own_accounts_server else None
        if accounts_server and not server:
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


def save_pending(rt, *, data_center, client_id, client_secret, account_id, redirect_uri=None, modules=MODULES) -> Result:
    """Keep the form for the redirect flow ("Connect through Zoho"; /admin/zoho/connect starts from
    it) without touching the live connection; an empty secret reuses the stored one."""
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


def redirect_credentials(rt) -> dict | None:
    """What the redirect flow needs, from the pending form, else the stored connection (`source`):
    data_center, client_id, client_secret, account_id, modules, redirect_uri; None without either."""
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
