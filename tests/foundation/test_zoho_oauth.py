"""Zoho's token endpoint answers classified into typed errors with plain words (requests-mock)."""
from __future__ import annotations

import pytest
import requests
import requests_mock

from gateway.zoho import oauth
from gateway.zoho.errors import OAuthRejected, Throttled, Unavailable, ZohoError

ACCOUNTS = "https://accounts.zoho.eu"
TOKEN_URL = ACCOUNTS + "/oauth/v2/token"
THROTTLE = {"error_description": "You have made too many requests continuously. Please try again after some time.",
            "error": "Access Denied", "status": "failure"}


def grant(**kwargs):
    return oauth.exchange_grant(ACCOUNTS, client_id="1000.CID", client_secret="s3cret", code="1000.code", **kwargs)


def test_grant_success_reads_tokens_and_sends_form_data():
    with requests_mock.Mocker() as m:
        m.post(TOKEN_URL, json={"access_token": "1000.a", "refresh_token": "1000.r", "api_domain": "https://www.zohoapis.eu/",
                                "token_type": "Bearer", "expires_in": 3600})
        answer = grant(redirect_uri="https://gw.example/admin/zoho/callback")
        sent = m.last_request
    assert answer == oauth.TokenAnswer("1000.a", 3600.0, "https://www.zohoapis.eu", "1000.r", "Bearer")
    assert sent.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert dict(p.split("=") for p in sent.text.split("&")) == {
        "grant_type": "authorization_code", "client_id": "1000.CID", "client_secret": "s3cret", "code": "1000.code",
        "redirect_uri": "https%3A%2F%2Fgw.example%2Fadmin%2Fzoho%2Fcallback"}


@pytest.mark.parametrize("status", [200, 400])
@pytest.mark.parametrize("error, words", [
    ("invalid_code", "invalid_code: the grant token has expired or was already used; make a new one"),
    ("invalid_client", "invalid_client: Zoho does not know this Client ID and Client Secret at the chosen data center's accounts server"),
    ("invalid_redirect_uri", "invalid_redirect_uri: the redirect URI does not match"),
])
def test_grant_errors_are_read_from_the_body_whatever_the_status(status, error, words):
    with requests_mock.Mocker() as m:
        m.post(TOKEN_URL, status_code=status, json={"error": error})
        with pytest.raises(OAuthRejected) as caught:
            grant()
    assert str(caught.value).startswith(words) and caught.value.code == error


def test_refresh_invalid_code_means_the_refresh_token_is_gone():
    with requests_mock.Mocker() as m:
        m.post(TOKEN_URL, json={"error": "invalid_code"})
        with pytest.raises(OAuthRejected) as caught:
            oauth.refresh(ACCOUNTS, client_id="c", client_secret="s", refresh_token="1000.r")
    assert str(caught.value).startswith("invalid_code: Zoho no longer accepts the stored refresh token")


@pytest.mark.parametrize("status", [200, 400])
def test_the_access_denied_throttle_is_throttled(status):
    with requests_mock.Mocker() as m:
        m.post(TOKEN_URL, status_code=status, json=THROTTLE)
        with pytest.raises(Throttled) as caught:
            oauth.refresh(ACCOUNTS, client_id="c", client_secret="s", refresh_token="1000.r")
    assert str(caught.value) == oauth.THROTTLE_MESSAGE and caught.value.retry_after is None


def test_unknown_error_keeps_zohos_description():
    with requests_mock.Mocker() as m:
        m.post(TOKEN_URL, json={"error": "invalid_scope", "error_description": "scope is not valid"})
        with pytest.raises(OAuthRejected, match=r"^invalid_scope: Zoho refused the token request: scope is not valid$"):
            grant()


def test_timeout_network_and_server_errors_are_unavailable():
    with requests_mock.Mocker() as m:
        m.post(TOKEN_URL, exc=requests.ConnectTimeout)
        with pytest.raises(Unavailable, match=r"^timeout: no answer from Zoho's accounts server accounts.zoho.eu within 15 s"):
            grant()
        m.post(TOKEN_URL, exc=requests.ConnectionError)
        with pytest.raises(Unavailable, match=r"^network error: could not reach Zoho's accounts server accounts.zoho.eu"):
            grant()
        m.post(TOKEN_URL, status_code=502, text="<html>Bad gateway</html>")
        with pytest.raises(Unavailable, match=r"HTTP 502"):
            grant()
        m.post(TOKEN_URL, status_code=200, text="<html>login</html>")
        with pytest.raises(ZohoError, match=r"answer the gateway does not understand \(HTTP 200\)"):
            grant()


def test_no_secret_in_any_message():
    with requests_mock.Mocker() as m:
        for body in ({"error": "invalid_client"}, {"error": "weird", "error_description": "x"}, THROTTLE):
            m.post(TOKEN_URL, json=body)
            with pytest.raises(ZohoError) as caught:
                grant()
            assert "s3cret" not in str(caught.value) and "1000.code" not in str(caught.value)


def test_revoke_sends_the_token_as_a_query_parameter():
    with requests_mock.Mocker() as m:
        m.post(TOKEN_URL + "/revoke", json={"status": "success"})
        oauth.revoke(ACCOUNTS, "1000.r")
        assert m.last_request.qs == {"token": ["1000.r"]}
        m.post(TOKEN_URL + "/revoke", json={"error": "invalid_token"})
        with pytest.raises(ZohoError, match="did not confirm the revocation \\(invalid_token\\)"):
            oauth.revoke(ACCOUNTS, "1000.r")


def test_authorization_url_asks_for_offline_access_with_consent():
    url = oauth.authorization_url(ACCOUNTS, client_id="1000.CID", redirect_uri="https://gw.example/admin/zoho/callback", state="abc")
    assert url == ("https://accounts.zoho.eu/oauth/v2/auth?scope=ZohoCRM.modules.ALL%2CZohoCRM.notifications.ALL&client_id=1000.CID&response_type=code"
                   "&access_type=offline&prompt=consent&redirect_uri=https%3A%2F%2Fgw.example%2Fadmin%2Fzoho%2Fcallback&state=abc")


def test_data_centers_and_overrides():
    from gateway.zoho.datacenters import DATA_CENTERS, accounts_url, api_url, trusted_accounts_server

    assert sorted(DATA_CENTERS) == sorted("us eu in au jp ca sa uk cn".split())
    assert DATA_CENTERS["ca"] == ("https://accounts.zohocloud.ca", "https://www.zohoapis.ca")
    assert accounts_url({}, "au") == "https://accounts.zoho.com.au"
    assert accounts_url({"ZOHO_ACCOUNTS_URL": "http://127.0.0.1:5/"}, "au") == "http://127.0.0.1:5"
    assert api_url({}, "jp", None) == "https://www.zohoapis.jp"
    assert api_url({}, "us", "https://www.zohoapis.eu") == "https://www.zohoapis.eu"
    assert api_url({"ZOHO_API_URL": "http://x"}, "us", "https://www.zohoapis.eu") == "http://x"
    assert trusted_accounts_server({}, "https://accounts.zoho.eu") == "https://accounts.zoho.eu"
    assert trusted_accounts_server({}, "https://evil.example") is None
    assert trusted_accounts_server({}, "http://accounts.zoho.eu") is None  # https only
    assert trusted_accounts_server({"ZOHO_ACCOUNTS_URL": "http://127.0.0.1:5"}, "http://127.0.0.1:5/eu") == "http://127.0.0.1:5/eu"
