"""Connecting a hosted store: `configure-ops`, the admin page's card, /readyz and the status card."""
from __future__ import annotations

from gateway.ops import api_connection
from tests.conftest import logged_in
from tests.hosted.conftest import hosted_app


def test_configure_ops_checks_the_client_and_prints_the_statuses(make_app, fake_zoho, zoho_settings, fake_ops, gateway_logs):
    app = hosted_app(make_app, zoho_settings, fake_ops)
    runner = app.test_cli_runner()
    client_id, secret = fake_ops.add_client()
    result = runner.invoke(args=["configure-ops", "--url", fake_ops.url + "/api/", "--client-id", client_id,
                                 "--client-secret-stdin"], input=secret + "\n")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"connected {fake_ops.url} 6 statuses"
    shown = api_connection(app.extensions["gateway"])
    assert shown["url"] == fake_ops.url and shown["secret_last4"] == "…" + secret[-4:]
    assert secret not in gateway_logs()

    # A wrong secret: OnPrintShop's reason on one line, non-zero, and the working client is kept.
    bad = runner.invoke(args=["configure-ops", "--url", fake_ops.url, "--client-id", client_id, "--client-secret-stdin"],
                        input="wrong\n")
    assert bad.exit_code != 0
    assert bad.output.strip().splitlines() == ["Error: OnPrintShop refused the API client (HTTP 401 Client authentication "
                                               "failed): check the URL, client id and secret"]
    assert api_connection(app.extensions["gateway"])["secret_last4"] == "…" + secret[-4:]
    empty = runner.invoke(args=["configure-ops", "--url", fake_ops.url, "--client-id", client_id, "--client-secret-stdin"],
                          input="\n")
    assert empty.exit_code != 0 and "standard input was empty" in empty.output


def test_readyz_and_the_page_report_the_api_like_the_database(make_app, fake_zoho, zoho_settings, fake_ops):
    app = hosted_app(make_app, zoho_settings, fake_ops)
    client = app.test_client()
    assert client.get("/readyz").get_json()["ops_api"] == "not_configured"
    assert "ops_database" not in client.get("/readyz").get_json()

    admin = logged_in(app)
    page = admin.client.get("/admin/").get_data(as_text=True)
    assert "Connect to OnPrintShop" in page and 'data-state="not_configured"' in page
    client_id, secret = fake_ops.add_client()
    answer = admin.post("/admin/ops/connect", {"url": fake_ops.url, "ops_client_id": client_id, "ops_client_secret": secret},
                        follow_redirects=True)
    text = answer.get_data(as_text=True)
    assert f"connected {fake_ops.url} 6 statuses" in text
    assert secret not in text and "…" + secret[-4:] in text
    assert 'data-state="ok"' in text and "120 calls per 60 s (OPS_API_RATE_LIMIT)" in text
    assert client.get("/readyz").get_json()["ops_api"] == "ok"

    fake_ops.outage = True
    app.extensions["gateway"].ops.api.last_ok = 0  # the last answer is older than the recheck
    assert client.get("/readyz").get_json()["ops_api"].startswith("unavailable")
    # Without the CSRF token nothing is saved.
    refused = admin.client.post("/admin/ops/connect", data={"url": fake_ops.url, "ops_client_id": "x", "ops_client_secret": "y"})
    assert refused.status_code == 400


def test_the_database_backend_has_no_onprintshop_connect_card(app):
    admin = logged_in(app)
    page = admin.client.get("/admin/").get_data(as_text=True)
    assert "Connect to OnPrintShop" not in page and "its MySQL database (OPS_DATABASE_URL)" in page
    assert app.test_client().get("/readyz").get_json()["ops_database"] == "ok"


def test_the_backend_settings_are_checked_at_start_up(make_app, tmp_path):
    import pytest

    from gateway import settings
    from gateway.errors import ConfigError

    with pytest.raises(ConfigError, match="OPS_BACKEND must be 'database' or 'api', not 'mysql'"):
        make_app(OPS_BACKEND="mysql")
    with pytest.raises(ConfigError, match="OPS_API_RATE_LIMIT must be one limit such as '120 per minute'"):
        make_app(OPS_BACKEND="api", OPS_API_RATE_LIMIT="lots")
    with pytest.raises(ConfigError, match="OPS_API_URL must be the store's base URL"):
        make_app(OPS_BACKEND="api", OPS_API_URL="ftp://shop")
    # Production with the API backend needs no OnPrintShop database.
    env = {"GATEWAY_ENV": "production", "SECRET_KEY": "k" * 40, "GATEWAY_FERNET_KEYS": "x",
           "DATABASE_URL": f"sqlite:///{tmp_path}/s.db", "OPS_BACKEND": "api", "OPS_API_URL": "https://shop.example.com/api/"}
    values = settings.load(str(tmp_path / "instance"), environ=env)
    assert values["OPS_API_URL"] == "https://shop.example.com" and values["OPS_DATABASE_URL"] is None
    with pytest.raises(ConfigError, match="OPS_DATABASE_URL"):
        settings.load(str(tmp_path / "instance"), environ={**env, "OPS_BACKEND": "database"})


def test_the_environment_wins_over_the_saved_client(make_hosted, make_app, zoho_settings, fake_ops):
    """Saved on the page, then set in the environment (a platform's config vars): the environment's are used."""
    from gateway.ops.api import credentials

    make_hosted()  # saves a working client in the vault
    env_id, env_secret = fake_ops.add_client()
    app = make_app(OPS_BACKEND="api", OPS_TIMEZONE="UTC", OPS_API_URL=fake_ops.url + "/api/", OPS_API_CLIENT_ID=env_id,
                   OPS_API_CLIENT_SECRET=env_secret, **zoho_settings)
    rt = app.extensions["gateway"]
    creds = credentials.current(rt.config, rt.store, rt.vault)
    assert (creds.url, creds.client_id, creds.client_secret) == (fake_ops.url, env_id, env_secret)
    shown = credentials.shown(rt.config, rt.store)
    assert shown["client_id_last4"].endswith(env_id[-4:]) and set(shown["from_environment"]) == {
        "OPS_API_URL", "OPS_API_CLIENT_ID", "OPS_API_CLIENT_SECRET"}
    page = logged_in(app).client.get("/admin/").get_data(as_text=True)
    assert env_secret not in page and env_id[-4:] in page
