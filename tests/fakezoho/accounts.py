"""The fake Zoho's accounts server: grant, refresh and revoke, with Zoho's answers and limits.

What ZOHO_NOTES says the real one does, on the fake's clock (`fake.now()` / `fake.advance()`):
- clients: `fake.add_client(dc="us")` -> (client_id, client_secret); an unknown client or a
  wrong secret, or a client of another data center, is answered `{"error": "invalid_client"}`.
- grant codes: `fake.new_grant_code(client_id, ttl=180, user="admin@example.com",
  redirect_uri=None, scope=FULL_SCOPE)`; the scope goes with the refresh token and every access
  token made from it (`fake.token_scopes`; the watch endpoints need `ZohoCRM.notifications.*`); single use, expire after `ttl` s; a used, expired or unknown code is
  `{"error": "invalid_code"}`; a code made for a redirect URI needs the same `redirect_uri`.
- errors come with HTTP `fake.oauth_error_status` (200, as Zoho mostly does).
- refresh: at most 10 access tokens per refresh token per 10 minutes (the grant's own counts),
  then Zoho's "Access Denied" body with HTTP `fake.throttle_status` (400 by default); at most
  15 live access tokens per refresh token (the oldest is invalidated).
- at most 20 refresh tokens per user: the 21st invalidates the oldest; a revoked or pushed out
  refresh token is `invalid_code`. Revoking a refresh token kills its access tokens too.
- `POST /oauth/v2/token/revoke?token=…` -> `{"status": "success"}`.
- `GET /oauth/v2/auth?…` plays the consent page: it approves at once and redirects (302) to the
  `redirect_uri` with `code`, `location`, `accounts-server` and `state`, for the user's data
  center `fake.auth_location` (default "us").
- Data centers: one fake serves them all; the US one at `/oauth/...`, the others under a
  prefix, `/<dc>/oauth/...` (so `accounts-server` for eu is `<fake.url>/eu`).
- Counters: `fake.calls["oauth.grant"]`, `["oauth.refresh"]`, `["oauth.revoke"]`,
  `["oauth.throttled"]`, `["oauth.error"]`, plus the server's own per-route counts;
  `fake.revoked` (refresh tokens revoked through the endpoint).
"""
from __future__ import annotations

import secrets
from collections import deque
from urllib.parse import urlencode

from .server import Response

GRANT_TTL = 180.0
FULL_SCOPE = "ZohoCRM.modules.ALL,ZohoCRM.notifications.ALL"
ACCESS_TTL = 3600.0
ACCESS_PER_WINDOW = 10
WINDOW = 600.0
MAX_LIVE_ACCESS = 15
MAX_REFRESH_PER_USER = 20
THROTTLE_BODY = {
    "error_description": "You have made too many requests continuously. Please try again after some time.",
    "error": "Access Denied",
    "status": "failure",
}
DC_PREFIX = r"(?:/(?P<dc>eu|in|au|jp|ca|sa|uk|cn))?"


def _token(prefix: str = "1000") -> str:
    return f"{prefix}.{secrets.token_hex(16)}.{secrets.token_hex(16)}"


def install(fake) -> None:
    fake.clients = {}          # client_id -> {"secret", "dc"}
    fake.grant_codes = {}      # code -> {"client_id", "expires", "used", "user", "redirect_uri"}
    fake.refresh_tokens = {}   # token -> {"client_id", "user", "dc", "alive", "issued": deque[times], "access": deque[tokens]}
    fake.user_refresh = {}     # user -> deque of their live refresh tokens, oldest first
    fake.revoked = []
    fake.oauth_error_status = 200
    fake.throttle_status = 400
    fake.auth_location = "us"
    fake.auth_user = "admin@example.com"
    fake.token_latency = 0.0   # extra delay for token endpoint answers (stampede tests)

    def add_client(dc: str = "us", client_id: str | None = None, client_secret: str | None = None):
        client_id = client_id or "1000." + secrets.token_hex(15).upper()
        client_secret = client_secret or secrets.token_hex(21)
        with fake.lock:
            fake.clients[client_id] = {"secret": client_secret, "dc": dc}
        return client_id, client_secret

    def new_grant_code(client_id: str, ttl: float = GRANT_TTL, user: str | None = None, redirect_uri: str | None = None,
                       scope: str = FULL_SCOPE) -> str:
        code = _token("1000")
        with fake.lock:
            fake.grant_codes[code] = {"client_id": client_id, "expires": fake.now() + ttl, "used": False,
                                      "user": user or fake.auth_user, "redirect_uri": redirect_uri, "scope": scope}
        return code

    def live_refresh_tokens(user: str | None = None) -> list[str]:
        with fake.lock:
            return list(fake.user_refresh.get(user or fake.auth_user, ()))

    fake.add_client = add_client
    fake.new_grant_code = new_grant_code
    fake.live_refresh_tokens = live_refresh_tokens

    def error(name: str, status: int | None = None) -> Response:
        fake.calls["oauth.error"] += 1
        fake.calls[f"oauth.error.{name}"] += 1
        return Response(fake.oauth_error_status if status is None else status, {"error": name})

    def check_client(params: dict, dc: str) -> Response | None:
        client = fake.clients.get(params.get("client_id", ""))
        if client is None or client["secret"] != params.get("client_secret") or client["dc"] != dc:
            return error("invalid_client")
        return None

    def issue_access(refresh_token: str) -> tuple[str, None] | tuple[None, Response]:
        """A new access token for this refresh token, unless the 10-per-10-minutes limit is reached."""
        entry = fake.refresh_tokens[refresh_token]
        now = fake.now()
        issued = entry["issued"]
        while issued and issued[0] <= now - WINDOW:
            issued.popleft()
        if len(issued) >= ACCESS_PER_WINDOW:
            fake.calls["oauth.throttled"] += 1
            return None, Response(fake.throttle_status, dict(THROTTLE_BODY))
        issued.append(now)
        access = _token("1000")
        fake.access_tokens[access] = now + ACCESS_TTL
        fake.token_scopes[access] = entry["scope"]
        entry["access"].append(access)
        while len(entry["access"]) > MAX_LIVE_ACCESS:
            fake.access_tokens.pop(entry["access"].popleft(), None)
        return access, None

    def kill_refresh_token(token: str) -> None:
        entry = fake.refresh_tokens.get(token)
        if entry is None or not entry["alive"]:
            return
        entry["alive"] = False
        for access in entry["access"]:
            fake.access_tokens.pop(access, None)
        users = fake.user_refresh.get(entry["user"])
        if users and token in users:
            users.remove(token)

    @fake.route("POST", DC_PREFIX + r"/oauth/v2/token", name="oauth_token")
    def token(req):
        if fake.token_latency:
            import time

            time.sleep(fake.token_latency)
        params = req.params
        dc = req.match.group("dc") or "us"
        grant_type = params.get("grant_type")
        with fake.lock:
            if grant_type == "authorization_code":
                fake.calls["oauth.grant"] += 1
                refused = check_client(params, dc)
                if refused:
                    return refused
                code = fake.grant_codes.get(params.get("code", ""))
                if code is None or code["used"] or code["expires"] <= fake.now() or code["client_id"] != params["client_id"]:
                    if code is not None and code["client_id"] == params["client_id"]:
                        code["used"] = True
                    return error("invalid_code")
                if code["redirect_uri"] and code["redirect_uri"] != params.get("redirect_uri"):
                    return error("invalid_redirect_uri")
                code["used"] = True
                refresh_token = _token("1000")
                fake.refresh_tokens[refresh_token] = {
                    "client_id": params["client_id"], "user": code["user"], "dc": dc, "alive": True,
                    "issued": deque(), "access": deque(), "scope": code["scope"],
                }
                users = fake.user_refresh.setdefault(code["user"], deque())
                users.append(refresh_token)
                while len(users) > MAX_REFRESH_PER_USER:
                    kill_refresh_token(users[0])
                access, throttled = issue_access(refresh_token)
                return Response(200, {
                    "access_token": access, "refresh_token": refresh_token,
                    "api_domain": fake.url, "token_type": "Bearer", "expires_in": int(ACCESS_TTL),
                })
            if grant_type == "refresh_token":
                fake.calls["oauth.refresh"] += 1
                refused = check_client(params, dc)
                if refused:
                    return refused
                entry = fake.refresh_tokens.get(params.get("refresh_token", ""))
                if entry is None or not entry["alive"] or entry["client_id"] != params["client_id"]:
                    return error("invalid_code")
                access, throttled = issue_access(params["refresh_token"])
                if throttled:
                    return throttled
                return Response(200, {"access_token": access, "api_domain": fake.url, "token_type": "Bearer",
                                      "expires_in": int(ACCESS_TTL)})
            return error("unsupported_grant_type", 400)

    @fake.route("POST", DC_PREFIX + r"/oauth/v2/token/revoke", name="oauth_revoke")
    def revoke(req):
        with fake.lock:
            fake.calls["oauth.revoke"] += 1
            token = req.params.get("token", "")
            if token in fake.refresh_tokens:
                kill_refresh_token(token)
                fake.revoked.append(token)
        return Response(200, {"status": "success"})

    @fake.route("GET", DC_PREFIX + r"/oauth/v2/auth", name="oauth_auth")
    def authorize(req):
        q = req.query
        client = fake.clients.get(q.get("client_id", ""))
        if client is None or q.get("response_type") != "code" or not q.get("redirect_uri"):
            return Response(400, {"error": "invalid_client" if client is None else "invalid_request"})
        fake.calls["oauth.auth"] += 1
        fake.last_auth_query = dict(q)
        location = fake.auth_location
        code = new_grant_code(q["client_id"], redirect_uri=q["redirect_uri"], scope=q.get("scope", ""))
        server = fake.url if location == "us" else f"{fake.url}/{location}"
        target = q["redirect_uri"] + ("&" if "?" in q["redirect_uri"] else "?") + urlencode(
            {"code": code, "location": location, "accounts-server": server, "state": q.get("state", "")})
        return Response(302, None, {"Location": target})
