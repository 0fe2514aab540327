"""The simulator's accounts server: grant, refresh, revoke and the consent page, with Zoho's
answers and limits (10 access tokens per refresh token per 10 minutes, 15 live, 20 refresh
tokens per user), on the simulator's clock; the knobs are listed in docs/simulator.md."""
from __future__ import annotations

import secrets
import time
from collections import deque
from urllib.parse import urlencode

from .messages import Response

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


def install(sim) -> None:
    sim.clients = {}          # client_id -> {"secret", "dc"}
    sim.grant_codes = {}      # code -> {"client_id", "expires", "used", "user", "redirect_uri"}
    sim.refresh_tokens = {}   # token -> {"client_id", "user", "dc", "alive", "issued": deque[times], "access": deque[tokens]}
    sim.user_refresh = {}     # user -> deque of their live refresh tokens, oldest first
    sim.revoked = []
    sim.oauth_error_status = 200
    sim.throttle_status = 400
    sim.auth_location = "us"
    sim.auth_user = "admin@example.com"
    sim.token_latency = 0.0   # extra delay for token endpoint answers (stampede tests)

    def add_client(dc: str = "us", client_id: str | None = None, client_secret: str | None = None):
        client_id = client_id or "1000." + secrets.token_hex(15).upper()
        client_secret = client_secret or secrets.token_hex(21)
        with sim.lock:
            sim.clients[client_id] = {"secret": client_secret, "dc": dc}
        return client_id, client_secret

    def new_grant_code(client_id: str, ttl: float = GRANT_TTL, user: str | None = None, redirect_uri: str | None = None,
                       scope: str = FULL_SCOPE) -> str:
        code = _token("1000")
        with sim.lock:
            sim.grant_codes[code] = {"client_id": client_id, "expires": sim.now() + ttl, "used": False,
                                     "user": user or sim.auth_user, "redirect_uri": redirect_uri, "scope": scope}
        return code

    def live_refresh_tokens(user: str | None = None) -> list[str]:
        with sim.lock:
            return list(sim.user_refresh.get(user or sim.auth_user, ()))

    sim.add_client = add_client
    sim.new_grant_code = new_grant_code
    sim.live_refresh_tokens = live_refresh_tokens

    def error(name: str, status: int | None = None) -> Response:
        sim.calls["oauth.error"] += 1
        sim.calls[f"oauth.error.{name}"] += 1
        return Response(sim.oauth_error_status if status is None else status, {"error": name})

    def check_client(params: dict, dc: str) -> Response | None:
        client = sim.clients.get(params.get("client_id", ""))
        if client is None or client["secret"] != params.get("client_secret") or client["dc"] != dc:
            return error("invalid_client")
        return None

    def issue_access(refresh_token: str) -> tuple[str, None] | tuple[None, Response]:
        """A new access token for this refresh token, unless the 10-per-10-minutes limit is reached."""
        entry = sim.refresh_tokens[refresh_token]
        now = sim.now()
        issued = entry["issued"]
        while issued and issued[0] <= now - WINDOW:
            issued.popleft()
        if len(issued) >= ACCESS_PER_WINDOW:
            sim.calls["oauth.throttled"] += 1
            return None, Response(sim.throttle_status, dict(THROTTLE_BODY))
        issued.append(now)
        access = _token("1000")
        sim.access_tokens[access] = now + ACCESS_TTL
        sim.token_scopes[access] = entry["scope"]
        entry["access"].append(access)
        while len(entry["access"]) > MAX_LIVE_ACCESS:
            sim.access_tokens.pop(entry["access"].popleft(), None)
        return access, None

    def kill_refresh_token(token: str) -> None:
        entry = sim.refresh_tokens.get(token)
        if entry is None or not entry["alive"]:
            return
        entry["alive"] = False
        for access in entry["access"]:
            sim.access_tokens.pop(access, None)
        users = sim.user_refresh.get(entry["user"])
        if users and token in users:
            users.remove(token)

    @sim.route("POST", DC_PREFIX + r"/oauth/v2/token", name="oauth_token")
    def token(req):
        if sim.token_latency:
            time.sleep(sim.token_latency)
        params = req.params
        dc = req.match.group("dc") or "us"
        grant_type = params.get("grant_type")
        if grant_type not in ("authorization_code", "refresh_token"):
            return error("unsupported_grant_type", 400)
        with sim.lock:
            sim.calls["oauth.grant" if grant_type == "authorization_code" else "oauth.refresh"] += 1
            refused = check_client(params, dc)
            if refused:
                return refused
            if grant_type == "authorization_code":
                code = sim.grant_codes.get(params.get("code", ""))
                if code is None or code["used"] or code["expires"] <= sim.now() or code["client_id"] != params["client_id"]:
                    if code is not None and code["client_id"] == params["client_id"]:
                        code["used"] = True
                    return error("invalid_code")
                if code["redirect_uri"] and code["redirect_uri"] != params.get("redirect_uri"):
                    return error("invalid_redirect_uri")
                code["used"] = True
                refresh_token = _token("1000")
                sim.refresh_tokens[refresh_token] = {
                    "client_id": params["client_id"], "user": code["user"], "dc": dc, "alive": True,
                    "issued": deque(), "access": deque(), "scope": code["scope"],
                }
                users = sim.user_refresh.setdefault(code["user"], deque())
                users.append(refresh_token)
                while len(users) > MAX_REFRESH_PER_USER:
                    kill_refresh_token(users[0])
                access, throttled = issue_access(refresh_token)
                return Response(200, {
                    "access_token": access, "refresh_token": refresh_token,
                    "api_domain": sim.url, "token_type": "Bearer", "expires_in": int(ACCESS_TTL),
                })
            entry = sim.refresh_tokens.get(params.get("refresh_token", ""))
            if entry is None or not entry["alive"] or entry["client_id"] != params["client_id"]:
                return error("invalid_code")
            access, throttled = issue_access(params["refresh_token"])
            if throttled:
                return throttled
            return Response(200, {"access_token": access, "api_domain": sim.url, "token_type": "Bearer",
                                  "expires_in": int(ACCESS_TTL)})

    @sim.route("POST", DC_PREFIX + r"/oauth/v2/token/revoke", name="oauth_revoke")
    def revoke(req):
        with sim.lock:
            sim.calls["oauth.revoke"] += 1
            token = req.params.get("token", "")
            if token in sim.refresh_tokens:
                kill_refresh_token(token)
                sim.revoked.append(token)
        return Response(200, {"status": "success"})

    @sim.route("GET", DC_PREFIX + r"/oauth/v2/auth", name="oauth_auth")
    def authorize(req):
        q = req.query
        client = sim.clients.get(q.get("client_id", ""))
        if client is None or q.get("response_type") != "code" or not q.get("redirect_uri"):
            return Response(400, {"error": "invalid_client" if client is None else "invalid_request"})
        sim.calls["oauth.auth"] += 1
        sim.last_auth_query = dict(q)
        location = sim.auth_location
        code = new_grant_code(q["client_id"], redirect_uri=q["redirect_uri"], scope=q.get("scope", ""))
        server = sim.url if location == "us" else f"{sim.url}/{location}"
        target = q["redirect_uri"] + ("&" if "?" in q["redirect_uri"] else "?") + urlencode(
            {"code": code, "location": location, "accounts-server": server, "state": q.get("state", "")})
        return Response(302, None, {"Location": target})
