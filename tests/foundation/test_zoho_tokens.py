"""One Zoho access token for the whole deployment: refreshed once per expiry across threads and
processes, once per rejected token, backing off when throttled, and stopping with a clear
state when the refresh token is revoked."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest
import requests

from gateway.zoho import connect as zoho_connect
from gateway.zoho import connection, tokens
from gateway.zoho.errors import ApiRefused, ReauthorizationNeeded, Throttled, Unavailable
from gateway.simulator import Response

ACCOUNT = "5725767000000412345"
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def connect(app, fake):
    client_id, secret = fake.add_client()
    result = zoho_connect.configure(app.extensions["gateway"], data_center="us", client_id=client_id, client_secret=secret,
                                  grant_token=fake.new_grant_code(client_id), account_id=ACCOUNT)
    assert result.ok, result.message
    return client_id, secret


def expire_token(rt, fake, *, left: float = -1.0, at_zoho: bool = True):
    """The stored access token expires `left` seconds from now (at Zoho too, when already expired)."""
    info = connection.load(rt.store)
    assert connection.update_fields(rt.store, info["generation"], {"access_expires_at": time.time() + left})
    if left <= 0 and at_zoho:
        fake.advance(3600)


def add_probe(fake):
    @fake.route("GET", r"/crm/v8/Probe", name="probe")
    def probe(req):
        return fake.check_auth(req) or Response(200, {"ok": True})

    fake.routes.insert(0, fake.routes.pop())  # before the records API's own module routes


CHILD = r"""
import json, os, sys, threading
from gateway import create_app
app = create_app({"GATEWAY_RUN_WORKER": False})
rt = app.extensions["gateway"]
n = int(os.environ["STAMPEDE_THREADS"])
barrier = threading.Barrier(n + 1)
results = [None] * n
def work(i):
    barrier.wait()
    try:
        results[i] = rt.tokens.access_token()
    except Exception as exc:
        results[i] = "error: %s: %s" % (exc.__class__.__name__, exc)
threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
for t in threads:
    t.start()
print("ready", flush=True)
sys.stdin.readline()
barrier.wait()
for t in threads:
    t.join()
print(json.dumps({"tokens": results, "refreshes": rt.tokens.refreshes}), flush=True)
"""


def test_stampede_4_processes_x_8_threads_refresh_once(zoho_app, fake_zoho, tmp_path):
    rt = zoho_app.extensions["gateway"]
    connect(zoho_app, fake_zoho)
    old = rt.tokens.access_token()
    expire_token(rt, fake_zoho)
    fake_zoho.token_latency = 0.3  # a slow accounts server keeps the race window wide open
    env = dict(os.environ, GATEWAY_ENV="development", GATEWAY_INSTANCE_PATH=zoho_app.instance_path,
               DATABASE_URL=rt.store.url, OPS_DATABASE_URL=zoho_app.config["OPS_DATABASE_URL"],
               ZOHO_ACCOUNTS_URL=fake_zoho.url, ZOHO_API_URL=fake_zoho.url, STAMPEDE_THREADS="8")
    children = [subprocess.Popen([sys.executable, "-c", CHILD], cwd=REPO, env=env, stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    try:
        for child in children:
            line = child.stdout.readline()
            assert line == "ready\n", child.stderr.read()
        for child in children:  # all 32 threads go at once
            child.stdin.write("go\n")
            child.stdin.flush()
        outputs = [json.loads(child.communicate(timeout=120)[0]) for child in children]
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
    tokens = [token for out in outputs for token in out["tokens"]]
    assert len(tokens) == 32
    assert len(set(tokens)) == 1, set(tokens)
    (new,) = set(tokens)
    assert new != old and new in fake_zoho.access_tokens
    assert fake_zoho.calls["oauth.refresh"] == 1
    assert sum(out["refreshes"] for out in outputs) == 1
    assert rt.tokens.access_token() == new  # the parent reads the same shared token


def test_401_while_8_threads_wait_leads_to_one_refresh(zoho_app, fake_zoho):
    rt = zoho_app.extensions["gateway"]
    connect(zoho_app, fake_zoho)
    add_probe(fake_zoho)
    old = rt.tokens.access_token()
    assert rt.zoho.request("GET", "/crm/v8/Probe").status_code == 200
    del fake_zoho.access_tokens[old]  # Zoho drops the token early (e.g. more than 15 live ones)
    fake_zoho.token_latency = 0.3
    barrier = threading.Barrier(8)
    statuses, errors = [], []

    def call():
        barrier.wait()
        try:
            statuses.append(rt.zoho.request("GET", "/crm/v8/Probe").status_code)
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors and statuses == [200] * 8
    assert fake_zoho.calls["oauth.refresh"] == 1
    assert rt.tokens.access_token() != old


def test_a_rejected_token_that_is_no_longer_current_is_not_refreshed(sqlite_zoho_app, fake_zoho):
    rt = sqlite_zoho_app.extensions["gateway"]
    connect(sqlite_zoho_app, fake_zoho)
    old = rt.tokens.access_token()
    expire_token(rt, fake_zoho, left=100)  # inside the margin: refreshed now
    new = rt.tokens.access_token()
    assert new != old and fake_zoho.calls["oauth.refresh"] == 1
    assert rt.tokens.invalidate(old) == new  # someone else's stale token: no refresh
    assert fake_zoho.calls["oauth.refresh"] == 1
    with pytest.raises(ApiRefused):  # the current one, refreshed a moment ago: not again so soon
        rt.tokens.invalidate(new)
    rt.tokens.clock = lambda: time.time() + tokens.REJECTED_REFRESH_COOLDOWN + 1
    assert rt.tokens.invalidate(new) != new  # the current one, after the cooldown: refreshed
    assert fake_zoho.calls["oauth.refresh"] == 2


def test_refreshes_a_few_minutes_before_expiry_not_earlier(sqlite_zoho_app, fake_zoho):
    rt = sqlite_zoho_app.extensions["gateway"]
    connect(sqlite_zoho_app, fake_zoho)
    token = rt.tokens.access_token()
    expire_token(rt, fake_zoho, left=400)
    assert rt.tokens.access_token() == token and fake_zoho.calls["oauth.refresh"] == 0
    expire_token(rt, fake_zoho, left=200)
    assert rt.tokens.access_token() != token and fake_zoho.calls["oauth.refresh"] == 1
    status = connection.status(rt)
    assert status["access_expires_at"] == pytest.approx(time.time() + 3600, abs=30)
    assert status["last_refresh_at"] == pytest.approx(time.time(), abs=30)


def test_throttle_backs_off_instead_of_retrying_at_once(zoho_app, fake_zoho):
    rt = zoho_app.extensions["gateway"]
    connect(zoho_app, fake_zoho)
    for _ in range(9):  # the grant's token and 9 refreshes: Zoho's 10 per 10 minutes
        expire_token(rt, fake_zoho, left=-1, at_zoho=False)
        rt.tokens.access_token()
    assert fake_zoho.calls["oauth.refresh"] == 9
    expire_token(rt, fake_zoho, left=-1, at_zoho=False)
    with pytest.raises(Throttled) as caught:
        rt.tokens.access_token()
    assert caught.value.retry_after == pytest.approx(60)
    assert "too many requests" in str(caught.value)
    assert fake_zoho.calls["oauth.throttled"] == 1 and fake_zoho.calls["oauth.refresh"] == 10
    for _ in range(5):  # every caller in the next minute is told to wait; Zoho is not asked again
        with pytest.raises(Throttled) as again:
            rt.tokens.access_token()
        assert 0 < again.value.retry_after <= 60
    assert fake_zoho.calls["oauth.refresh"] == 10
    status = connection.status(rt)
    assert status["refresh_blocked_until"] == pytest.approx(time.time() + 60, abs=5)
    assert status["last_error"].startswith("token refresh throttled: Access Denied")
    assert status["state"] == "connected"

    # After the wait (and Zoho's window), the next caller refreshes and the error is cleared.
    fake_zoho.advance(600)
    rt.tokens.clock = lambda: time.time() + 61
    token = rt.tokens.access_token()
    assert token in fake_zoho.access_tokens and fake_zoho.calls["oauth.refresh"] == 11
    assert connection.status(rt)["last_error"] is None


def test_throttled_refresh_keeps_using_a_token_that_still_works(sqlite_zoho_app, fake_zoho):
    rt = sqlite_zoho_app.extensions["gateway"]
    connect(sqlite_zoho_app, fake_zoho)

    @fake_zoho.route("POST", r"/oauth/v2/token", name="always_throttled")
    def _throttled(req):
        return Response(200, {"error_description": "You have made too many requests continuously. Please try again after some time.",
                              "error": "Access Denied", "status": "failure"})

    fake_zoho.routes.insert(0, fake_zoho.routes.pop())
    token = rt.tokens.access_token()
    expire_token(rt, fake_zoho, left=200)  # due for a refresh, but still valid for minutes
    assert rt.tokens.access_token() == token
    assert rt.tokens.access_token() == token
    assert fake_zoho.calls["always_throttled"] == 1  # tried once, then backed off


def test_revoked_refresh_token_needs_reauthorization(zoho_app, fake_zoho):
    rt = zoho_app.extensions["gateway"]
    client_id, secret = connect(zoho_app, fake_zoho)
    (refresh_token,) = fake_zoho.live_refresh_tokens()
    requests.post(f"{fake_zoho.url}/oauth/v2/token/revoke", params={"token": refresh_token}, timeout=5)  # e.g. in Zoho's console
    expire_token(rt, fake_zoho)
    with pytest.raises(ReauthorizationNeeded) as caught:
        rt.tokens.access_token()
    assert str(caught.value).startswith("invalid_code: Zoho no longer accepts the stored refresh token")
    ready = zoho_app.test_client().get("/readyz")
    assert ready.status_code == 200 and ready.get_json()["zoho"] == "needs_reauthorization"
    assert connection.status(rt)["last_error"].startswith("token refresh failed: invalid_code")
    with pytest.raises(ReauthorizationNeeded) as again:  # callers keep getting it, without asking Zoho again
        rt.zoho.request("GET", "/crm/v8/Probe")
    assert str(again.value) == str(caught.value)
    assert fake_zoho.calls["oauth.refresh"] == 1

    result = zoho_connect.configure(rt, data_center="us", client_id=client_id, client_secret="",
                                  grant_token=fake_zoho.new_grant_code(client_id), account_id=ACCOUNT)
    assert result.ok, result.message
    assert connection.state(rt) == "connected" and rt.tokens.access_token() in fake_zoho.access_tokens


def test_the_21st_refresh_token_pushes_ours_out(sqlite_zoho_app, fake_zoho):
    rt = sqlite_zoho_app.extensions["gateway"]
    client_id, secret = connect(sqlite_zoho_app, fake_zoho)
    for _ in range(20):  # another tool connects the same Zoho user 20 more times
        answer = requests.post(f"{fake_zoho.url}/oauth/v2/token", timeout=5, data={
            "grant_type": "authorization_code", "client_id": client_id, "client_secret": secret,
            "code": fake_zoho.new_grant_code(client_id)}).json()
        assert "refresh_token" in answer
    assert len(fake_zoho.live_refresh_tokens()) == 20
    expire_token(rt, fake_zoho)
    with pytest.raises(ReauthorizationNeeded):
        rt.tokens.access_token()
    assert connection.state(rt) == "needs_reauthorization"


def test_an_unreachable_accounts_server_pauses_refreshes_briefly(sqlite_zoho_app, fake_zoho, make_app):
    rt = sqlite_zoho_app.extensions["gateway"]
    connect(sqlite_zoho_app, fake_zoho)
    expire_token(rt, fake_zoho)
    offline = make_app(DATABASE_URL=rt.store.url, ZOHO_ACCOUNTS_URL="http://127.0.0.1:9", ZOHO_API_URL=fake_zoho.url)
    tokens = offline.extensions["gateway"].tokens
    with pytest.raises(Unavailable, match=r"^network error: could not reach Zoho's accounts server 127.0.0.1:9"):
        tokens.access_token()
    with pytest.raises(Unavailable, match=r"^Zoho token refresh is paused for 5 s after: token refresh failed: network error"):
        tokens.access_token()  # the waiting callers do not each try the network again
    assert connection.state(rt) == "connected"
    rt.tokens.clock = lambda: time.time() + 6  # the pause is over; the accounts server answers again
    assert rt.tokens.access_token() in fake_zoho.access_tokens
    assert connection.status(rt)["last_error"] is None


def test_zoho_rejecting_fresh_tokens_costs_one_refresh_per_cooldown_in_every_process(zoho_app, fake_zoho, make_app,
                                                                                       zoho_settings):
    rt = zoho_app.extensions["gateway"]
    connect(zoho_app, fake_zoho)
    add_probe(fake_zoho)
    other = make_app(DATABASE_URL=rt.store.url, **zoho_settings).extensions["gateway"]  # a second process's service
    rejected = Response(401, {"code": "INVALID_TOKEN", "details": {}, "message": "invalid oauth token", "status": "error"})
    fake_zoho.check_auth = lambda req: rejected  # every token is refused (e.g. the API of another data center)

    outcomes = []
    for n in range(12):  # a dozen callbacks and pushes within seconds, in two processes
        with pytest.raises(ApiRefused) as caught:
            (rt if n % 2 else other).zoho.request("GET", "/crm/v8/Probe")
        outcomes.append(str(caught.value))
    # The grant's token was rejected: one refresh; the refreshed one was rejected too, and nobody
    # refreshes again within the cooldown (Zoho allows 10 refreshes per 10 minutes).
    assert fake_zoho.calls["oauth.refresh"] == 1
    assert fake_zoho.calls.get("oauth.throttled", 0) == 0
    assert all("check that the grant had the scope" in text for text in outcomes[:1])
    skipped = outcomes[1:]
    assert all(text.startswith("token refresh skipped: Zoho rejected (HTTP 401 INVALID_TOKEN) an access token refreshed ")
               for text in skipped), skipped[0]
    assert "check the Zoho data center" in skipped[0]
    status = connection.status(rt)
    assert status["state"] == "connected" and status["last_error"].startswith("token refresh skipped")

    # Once the cooldown is over, one more refresh is allowed (Zoho may have dropped the token).
    rt.tokens.clock = lambda: time.time() + tokens.REJECTED_REFRESH_COOLDOWN + 1
    with pytest.raises(ApiRefused):
        rt.zoho.request("GET", "/crm/v8/Probe")
    assert fake_zoho.calls["oauth.refresh"] == 2
