"""docs/security.md: every answer under /webhooks and /api is JSON with an `error`, the bare prefixes too."""
from __future__ import annotations

import pytest


@pytest.mark.parametrize("method, path, status", [
    ("POST", "/api", 404),
    ("POST", "/webhooks", 404),
    ("GET", "/api", 404),
    ("GET", "/webhooks", 404),
    ("POST", "/api/v2/nothing", 404),
    ("POST", "/webhooks/zoho/nothing", 404),
    ("GET", "/webhooks/zoho/contacts", 405),
    ("GET", "/api/v1/events", 405),
])
def test_errors_under_api_and_webhooks_are_json(client, method, path, status):
    r = client.open(path, method=method)
    assert r.status_code == status
    assert r.is_json and r.get_json()["error"], (path, r.data[:80])


@pytest.mark.parametrize("path", ["/webhooks/zoho/contacts", "/webhooks/zoho/deals", "/webhooks/zoho/notify",
                                  "/api/v1/events"])
def test_options_is_refused_in_json_naming_the_allowed_method(client, path):
    r = client.open(path, method="OPTIONS")
    assert r.status_code == 405 and r.is_json, (r.status_code, r.content_type, r.data[:80])
    assert "OPTIONS" in r.get_json()["error"]
    assert r.headers["Allow"] == "POST"


def test_pages_outside_stay_html(client):
    r = client.get("/apiary")  # only /api itself and below it are the API
    assert r.status_code == 404 and not r.is_json
    assert client.open("/admin/login", method="OPTIONS").status_code == 200
