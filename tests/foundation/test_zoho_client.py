"""The Zoho API client: base URL and auth header, typed errors for 429, 5xx, timeouts and 401s."""
from __future__ import annotations

import email.utils
import time

import pytest

from gateway.zoho import connect
from gateway.zoho.errors import parse_retry_after
from gateway.zoho.errors import ApiRefused, NotConfigured, Throttled, Unavailable
from gateway.simulator import Response

ACCOUNT = "5725767000000412345"


@pytest.fixture
def connected(make_app, zoho_settings, fake_zoho):
    app = make_app(**zoho_settings)
    rt = app.extensions["gateway"]
    client_id, secret = fake_zoho.add_client()
    assert connect.configure(rt, data_center="us", client_id=client_id, client_secret=secret,
                                grant_token=fake_zoho.new_grant_code(client_id), account_id=ACCOUNT).ok
    return rt


def probe(fake, answer):
    seen = []

    @fake.route("GET", r"/crm/v8/Probe", name="probe")
    def _probe(req):
        seen.append(req)
        return fake.check_auth(req) or answer(req)

    fake.routes.insert(0, fake.routes.pop())
    return seen


def test_sends_the_shared_token_to_the_api_domain(connected, fake_zoho):
    seen = probe(fake_zoho, lambda req: Response(200, {"data": [{"id": "1"}]}))
    response = connected.zoho.request("GET", "/crm/v8/Probe", params={"email": "a@b.c"})
    assert response.status_code == 200 and response.json() == {"data": [{"id": "1"}]}
    assert seen[0].headers["authorization"] == "Zoho-oauthtoken " + connected.tokens.access_token()
    assert seen[0].query == {"email": "a@b.c"}


def test_without_the_override_the_api_domain_from_zoho_is_used(make_app, fake_zoho):
    app = make_app(ZOHO_ACCOUNTS_URL=fake_zoho.url)  # no ZOHO_API_URL: the token answer's api_domain (the fake)
    rt = app.extensions["gateway"]
    with pytest.raises(NotConfigured, match="Zoho is not connected yet"):
        rt.zoho.request("GET", "/crm/v8/Probe")
    client_id, secret = fake_zoho.add_client()
    assert connect.configure(rt, data_center="us", client_id=client_id, client_secret=secret,
                                grant_token=fake_zoho.new_grant_code(client_id), account_id=ACCOUNT).ok
    probe(fake_zoho, lambda req: Response(200, {}))
    assert rt.zoho.base_url() == fake_zoho.url
    assert rt.zoho.request("GET", "/crm/v8/Probe").status_code == 200


def test_429_is_throttled_with_retry_after(connected, fake_zoho):
    probe(fake_zoho, lambda req: Response(429, {"code": "TOO_MANY_REQUESTS", "status": "error"}, {"Retry-After": "7"}))
    with pytest.raises(Throttled) as caught:
        connected.zoho.request("GET", "/crm/v8/Probe")
    assert caught.value.retry_after == 7.0 and caught.value.code == "TOO_MANY_REQUESTS"
    assert fake_zoho.calls["probe"] == 1  # no immediate retry


def test_5xx_and_timeouts_are_unavailable(connected, fake_zoho):
    probe(fake_zoho, lambda req: Response(503, {"code": "INTERNAL_ERROR"}))
    with pytest.raises(Unavailable, match=r"HTTP 503"):
        connected.zoho.request("GET", "/crm/v8/Probe")
    fake_zoho.latency = 1.0
    with pytest.raises(Unavailable, match=r"^timeout: Zoho did not answer GET /crm/v8/Probe within 0.2 s"):
        connected.zoho.request("GET", "/crm/v8/Probe", timeout=0.2)


def test_other_4xx_answers_are_returned_to_the_caller(connected, fake_zoho):
    probe(fake_zoho, lambda req: Response(400, {"code": "INVALID_DATA", "status": "error"}))
    assert connected.zoho.request("GET", "/crm/v8/Probe").status_code == 400


def test_a_401_other_than_invalid_token_is_not_retried(connected, fake_zoho):
    probe(fake_zoho, lambda req: Response(401, {"code": "OAUTH_SCOPE_MISMATCH", "message": "invalid oauth scope", "status": "error"}))
    with pytest.raises(ApiRefused, match="OAUTH_SCOPE_MISMATCH: invalid oauth scope.*ZohoCRM.modules.ALL"):
        connected.zoho.request("GET", "/crm/v8/Probe")
    assert fake_zoho.calls["probe"] == 1 and fake_zoho.calls["oauth.refresh"] == 0


def test_a_token_rejected_twice_refreshes_once_and_stops(connected, fake_zoho):
    probe(fake_zoho, lambda req: Response(401, {"code": "INVALID_TOKEN", "message": "invalid oauth token", "status": "error"}))
    with pytest.raises(ApiRefused):
        connected.zoho.request("GET", "/crm/v8/Probe")
    assert fake_zoho.calls["probe"] == 2 and fake_zoho.calls["oauth.refresh"] == 1


def test_every_call_passes_through_the_gate(connected, fake_zoho):
    gate = pytest.importorskip("gateway.zoho.gate")
    probe(fake_zoho, lambda req: Response(200, {}))
    before = gate.count_last_day(connected.store, "calls")
    connected.zoho.request("GET", "/crm/v8/Probe")
    assert gate.count_last_day(connected.store, "calls") == before + 1


def test_retry_after_forms():
    assert parse_retry_after("12") == 12.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert parse_retry_after(later) == pytest.approx(30, abs=2)
