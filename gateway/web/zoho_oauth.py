"""The redirect-based way to connect Zoho (`/admin/zoho/connect` → Zoho → `/admin/zoho/callback`):
`state` kept in the session and checked once; `location` and `accounts-server` honoured only for
known Zoho servers (docs/zoho.md, "The redirect flow (no grant token to paste)")."""
from __future__ import annotations

import hmac
import secrets as pysecrets
import time

from flask import Blueprint, current_app, flash, redirect, render_template, request, session, url_for

from .. import audit
from ..zoho import connect as zoho_connect
from ..zoho import oauth
from ..zoho.datacenters import DATA_CENTERS, accounts_url, trusted_accounts_server
from .context import runtime
from .security import login_required

bp = Blueprint("zoho_oauth", __name__, url_prefix="/admin/zoho")

SESSION_KEY = "zoho_oauth"
STATE_MAX_AGE = 15 * 60  # Zoho's consent page is quick; an older state is a stale tab


def redirect_uri_for_request() -> str:
    public = current_app.config.get("GATEWAY_PUBLIC_URL")
    if public:
        return str(public).rstrip("/") + "/admin/zoho/callback"
    return url_for("zoho_oauth.callback", _external=True)


def _audit(action: str, detail: str) -> None:
    try:
        audit.record(runtime(), f"admin@{request.remote_addr or 'unknown'}", action, detail)
    except Exception:  # the audit trail must not stop the admin from seeing the outcome
        current_app.logger.warning("audit record failed for %s", action)


def _back(message: str, ok: bool, action: str):
    _audit(action, message[:200])
    flash(message, "ok" if ok else "error")
    return redirect(url_for("admin.index"))


@bp.get("/connect")
@login_required
def connect():
    rt = runtime()
    creds = zoho_connect.redirect_credentials(rt)
    if creds is None:
        flash("Save the data center, Client ID, Client Secret and Account ID first, then connect through Zoho.", "error")
        return redirect(url_for("admin.index"))
    redirect_uri = creds["redirect_uri"] or redirect_uri_for_request()
    state = pysecrets.token_urlsafe(32)
    session[SESSION_KEY] = {"state": state, "redirect_uri": redirect_uri, "started": time.time()}
    target = oauth.authorization_url(accounts_url(rt.config, creds["data_center"]), client_id=creds["client_id"],
                                     redirect_uri=redirect_uri, state=state)
    return redirect(target)


@bp.get("/callback")
@login_required
def callback():
    started = session.pop(SESSION_KEY, None)  # one use: a replayed callback finds nothing
    given = request.args.get("state", "")
    if (not started or not given or not hmac.compare_digest(str(started.get("state", "")), given)
            or time.time() - float(started.get("started", 0)) > STATE_MAX_AGE):
        return _back("Zoho's answer did not match a connection started from this page (state check failed or too old); "
                     "nothing was changed. Start again with “Connect through Zoho”.", False, "zoho callback refused")
    if request.args.get("error"):
        return _back(f"Zoho did not grant access ({request.args['error'][:60]}); nothing was changed.", False, "zoho callback refused")
    code = request.args.get("code", "").strip()
    if not code:
        return _back("Zoho's answer carried no grant code; nothing was changed. Start again.", False, "zoho callback refused")
    rt = runtime()
    creds = zoho_connect.redirect_credentials(rt)
    if creds is None:
        return _back("The saved Zoho settings are gone; save them again, then connect.", False, "zoho callback refused")
    server = request.args.get("accounts-server") or None
    if server and trusted_accounts_server(rt.config, server) is None:
        message = (f"Zoho's answer named {server[:100]!r} as its accounts server, which is not a Zoho accounts server "
                   "(or not a URL); nothing was changed and nothing was sent there. Start again with “Connect through Zoho”.")
        _audit("zoho callback refused", message[:200])
        return render_template("admin/problem.html", title="Not a Zoho accounts server", message=message), 400
    location = (request.args.get("location") or creds["data_center"]).strip().lower()
    if location not in DATA_CENTERS:
        return _back(f"Zoho named an unknown data center ({location[:20]!r}); nothing was changed.", False, "zoho callback refused")
    result = zoho_connect.configure(
        rt, data_center=location, client_id=creds["client_id"], client_secret=creds["client_secret"], grant_token=code,
        account_id=creds["account_id"], redirect_uri=started.get("redirect_uri"), modules=creds["modules"],
        accounts_server=server,
    )
    return _back(result.message, result.ok, "connect through zoho")
