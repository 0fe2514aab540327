"""Saving the Zoho connection: the grant exchange, Zoho's errors in plain words, the old
connection kept on failure, the old refresh token revoked on replacement, nothing secret in the
database bytes, the CLI output or the logs; and the `configure` command."""
from __future__ import annotations

import time

import pytest
from cryptography.fernet import Fernet

from gateway.zoho import connect, connection

ACCOUNT = "5725767000000412345"


def rt_of(app):
    return app.extensions["gateway"]


def save(app, fake, client_id, secret, code=None, **overrides):
    args = dict(data_center="us", client_id=client_id, client_secret=secret,
                grant_token=code or fake.new_grant_code(client_id), account_id=ACCOUNT)
    args.update(overrides)
    return connect.configure(rt_of(app), **args)


def test_a_good_grant_code_connects_and_stores_tokens(zoho_app, fake_zoho):
    client_id, secret = fake_zoho.add_client()
    result = save(zoho_app, fake_zoho, client_id, secret, modules=["deals"])
    assert result.ok, result.message
    assert result.message.startswith(f"connected to Zoho CRM (us, {fake_zoho.url}) at ")
    rt = rt_of(zoho_app)
    info = connection.status(rt)
    assert info["state"] == "connected" == connection.state(rt)
    assert info["data_center"] == "us" and info["api_domain"] == fake_zoho.url
    assert info["account_id"] == ACCOUNT == connection.account_id(rt)
    assert connection.modules(rt) == ("deals",)
    assert info["client_id_last4"] == "…" + client_id[-4:]
    (refresh_token,) = fake_zoho.live_refresh_tokens()
    assert info["refresh_token_last4"] == "…" + refresh_token[-4:]
    assert info["access_expires_at"] == pytest.approx(time.time() + 3600, abs=30)
    # the stored access token is the one Zoho issued: the API accepts it
    token = rt.tokens.access_token()
    assert token in fake_zoho.access_tokens
    assert fake_zoho.calls["oauth.grant"] == 1 and fake_zoho.calls["oauth.refresh"] == 0
    assert zoho_app.test_client().get("/readyz").get_json()["zoho"] == "connected"


@pytest.mark.parametrize("case, expected", [
    ("used_code", "invalid_code: the grant token has expired or was already used; make a new one"),
    ("expired_code", "invalid_code: the grant token has expired or was already used; make a new one"),
    ("wrong_secret", "invalid_client: Zoho does not know this Client ID and Client Secret"),
    ("wrong_data_center", "invalid_client: Zoho does not know this Client ID and Client Secret at the chosen data center"),
    ("throttled", "Access Denied: Zoho's accounts server says too many requests were made in a short time; wait a few minutes and try again"),
    ("network", "network error: could not reach Zoho's accounts server"),
])
def test_each_zoho_error_has_its_own_message_and_keeps_the_old_connection(zoho_app, fake_zoho, case, expected, make_app, tmp_path):
    client_id, secret = fake_zoho.add_client()
    assert save(zoho_app, fake_zoho, client_id, secret).ok
    rt = rt_of(zoho_app)
    before = connection.status(rt)
    token_before = rt.tokens.access_token()
    (refresh_before,) = fake_zoho.live_refresh_tokens()

    app = zoho_app
    code = fake_zoho.new_grant_code(client_id)
    other_id, other_secret = client_id, secret
    if case == "used_code":
        assert save(zoho_app, fake_zoho, client_id, secret, code=code).ok  # now the connection is this one
        before = connection.status(rt)
        token_before = rt.tokens.access_token()
        refresh_before = fake_zoho.live_refresh_tokens()[-1]
    elif case == "expired_code":
        fake_zoho.advance(181)
    elif case == "wrong_secret":
        other_secret = secret[:-4] + "0000"
    elif case == "wrong_data_center":
        other_id, other_secret = fake_zoho.add_client(dc="eu")
        code = fake_zoho.new_grant_code(other_id)
    elif case == "throttled":
        from gateway.simulator import Response

        @fake_zoho.route("POST", r"/oauth/v2/token", name="throttled_token")
        def _throttled(req):
            return Response(200, {"error_description": "You have made too many requests continuously. Please try again after some time.",
                                  "error": "Access Denied", "status": "failure"})

        fake_zoho.routes.insert(0, fake_zoho.routes.pop())  # answer before the real route
    elif case == "network":
        app = make_app(DATABASE_URL=rt.store.url, ZOHO_ACCOUNTS_URL="http://127.0.0.1:9", ZOHO_API_URL=fake_zoho.url)

    revoked_before = list(fake_zoho.revoked)
    result = connect.configure(rt_of(app), data_center="us", client_id=other_id, client_secret=other_secret,
                                  grant_token=code, account_id="5725767000000999999", modules=["contacts"])
    assert not result.ok
    assert result.message.startswith(expected), result.message
    after = connection.status(rt)
    for key in ("state", "data_center", "account_id", "modules", "client_id_last4", "refresh_token_last4",
                "access_token_last4", "access_expires_at", "connected_at"):
        assert after[key] == before[key], key
    assert after["last_error"] == "save failed: " + result.message
    assert rt.tokens.access_token() == token_before
    assert refresh_before in fake_zoho.live_refresh_tokens()  # still alive at Zoho: nothing revoked
    assert fake_zoho.revoked == revoked_before
    with rt.store.begin() as conn:  # the grant token is kept only while it is being exchanged
        assert rt.vault.get(conn, connection.PENDING_GRANT_TOKEN) is None


def test_bad_fields_are_named_and_nothing_is_sent(sqlite_zoho_app, fake_zoho):
    client_id, secret = fake_zoho.add_client()
    rt = rt_of(sqlite_zoho_app)
    cases = {
        "data_center: data center must be one of us eu in au jp ca sa uk cn": dict(data_center="mars"),
        "account_id: the Account ID is the long number at the end of a Zoho CRM Account record's URL": dict(account_id="Acme Ltd"),
        "client_secret: the Client Secret is required": dict(client_secret=""),
        "grant_token: the Grant Token is required": dict(grant_token=" "),
        "modules: 'invoices' is not a module the gateway syncs": dict(modules=["invoices"]),
        "modules: choose at least one module": dict(modules=[]),
        "redirect_uri: give the full URL": dict(redirect_uri="not a url"),
    }
    for expected, change in cases.items():
        args = dict(data_center="us", client_id=client_id, client_secret=secret, grant_token="1000.x", account_id=ACCOUNT)
        args.update(change)
        result = connect.configure(rt, **args)
        assert not result.ok and result.message.startswith(expected), result.message
    assert fake_zoho.calls["oauth.grant"] == 0
    assert connection.state(rt) == "not_configured"


def test_replacing_the_connection_revokes_the_old_refresh_token(zoho_app, fake_zoho):
    client_id, secret = fake_zoho.add_client()
    assert save(zoho_app, fake_zoho, client_id, secret).ok
    (first,) = fake_zoho.live_refresh_tokens()
    # The admin leaves the secret empty: the stored one is reused for the same Client ID.
    result = save(zoho_app, fake_zoho, client_id, "")
    assert result.ok, result.message
    assert "the previous refresh token was revoked at Zoho" in result.message
    assert fake_zoho.revoked == [first]
    assert fake_zoho.live_refresh_tokens() == [t for t in fake_zoho.refresh_tokens if t != first]
    token = rt_of(zoho_app).tokens.access_token()
    assert token in fake_zoho.access_tokens


def test_disconnect_revokes_and_forgets(zoho_app, fake_zoho):
    client_id, secret = fake_zoho.add_client()
    assert save(zoho_app, fake_zoho, client_id, secret).ok
    (refresh_token,) = fake_zoho.live_refresh_tokens()
    rt = rt_of(zoho_app)
    result = connect.disconnect(rt)
    assert result.ok and result.message == "disconnected from Zoho; the refresh token was revoked"
    assert fake_zoho.revoked == [refresh_token] and fake_zoho.live_refresh_tokens() == []
    assert connection.state(rt) == "not_configured"
    assert zoho_app.test_client().get("/readyz").get_json()["zoho"] == "not_configured"
    assert connection.status(rt)["refresh_token_last4"] == ""
    from gateway.zoho.errors import NotConfigured

    with pytest.raises(NotConfigured):
        rt.tokens.access_token()
    with rt.store.begin() as conn:
        for name in connection.LIVE_SECRETS:
            assert rt.vault.get(conn, name) is None


def test_update_changes_account_and_modules_without_a_grant(sqlite_zoho_app, fake_zoho):
    client_id, secret = fake_zoho.add_client()
    rt = rt_of(sqlite_zoho_app)
    assert not connect.update(rt, modules=["deals"]).ok
    assert save(sqlite_zoho_app, fake_zoho, client_id, secret).ok
    assert connect.update(rt, account_id="5725767000000000777", modules=["deals"]).ok
    assert connection.account_id(rt) == "5725767000000000777" and connection.modules(rt) == ("deals",)
    bad = connect.update(rt, account_id="x")
    assert not bad.ok and bad.message.startswith("account_id:")


def test_no_credential_or_token_in_database_bytes_cli_output_or_logs(make_app, zoho_settings, fake_zoho, tmp_path, gateway_logs):
    db = tmp_path / "plain.db"
    app = make_app(DATABASE_URL=f"sqlite:///{db}", GATEWAY_FERNET_KEYS=Fernet.generate_key().decode(), **zoho_settings)
    client_id, secret = fake_zoho.add_client()
    first_code = fake_zoho.new_grant_code(client_id)
    runner = app.test_cli_runner()
    outputs = []
    result = runner.invoke(args=["configure", "--data-center", "us", "--client-id", client_id, "--client-secret-stdin",
                                 "--grant-token", first_code, "--account-id", ACCOUNT], input=secret + "\n")
    assert result.exit_code == 0, result.output
    outputs.append(result.output)
    second = save(app, fake_zoho, client_id, secret)  # as the page does: this one logs
    assert second.ok
    outputs.append(second.message)
    failed = runner.invoke(args=["configure", "--data-center", "us", "--client-id", client_id, "--client-secret-stdin",
                                 "--grant-token", first_code, "--account-id", ACCOUNT], input=secret + "\n")
    outputs.append(failed.output)
    rt = app.extensions["gateway"]
    token = rt.tokens.access_token()
    fake_zoho.advance(3600)
    connection.update_fields(rt.store, connection.load(rt.store)["generation"], {"access_expires_at": time.time() - 1})
    refreshed = rt.tokens.access_token()
    assert refreshed != token
    connect.disconnect(rt)
    rt.store.dispose()
    secrets = {client_id, secret, first_code, token, refreshed, *fake_zoho.refresh_tokens}
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("plain.db*"))
    text = "".join(outputs) + gateway_logs()
    assert "zoho connected" in gateway_logs() and "refreshed" in gateway_logs() and "revoked" in gateway_logs()  # the logs did record the events
    for value in secrets:
        assert value.encode() not in raw, "a Zoho credential is in the database in plain text"
        assert value not in text, "a Zoho credential is in the CLI output or the logs"


def test_configure_command_connects_then_refuses_a_used_code_in_one_line(make_app, zoho_settings, fake_zoho):
    app = make_app(**zoho_settings)
    client_id, secret = fake_zoho.add_client()
    code = fake_zoho.new_grant_code(client_id)
    args = ["configure", "--data-center", "us", "--client-id", client_id, "--client-secret-stdin", "--grant-token", code,
            "--account-id", ACCOUNT, "--module", "contacts", "--module", "deals"]
    runner = app.test_cli_runner()
    ok = runner.invoke(args=args, input=secret + "\n")
    assert ok.exit_code == 0, ok.output
    assert ok.output == f"connected us {fake_zoho.url}\n"

    used = runner.invoke(args=args, input=secret + "\n")
    assert used.exit_code != 0
    assert used.output == "Error: invalid_code: the grant token has expired or was already used; make a new one\n"
    assert "Traceback" not in used.output and used.exception is None or isinstance(used.exception, SystemExit)
    assert connection.state(app.extensions["gateway"]) == "connected"

    bad_dc = runner.invoke(args=["configure", "--data-center", "mars", "--client-id", "x", "--grant-token", "y",
                                 "--account-id", ACCOUNT])
    assert bad_dc.exit_code != 0 and "'mars' is not one of" in bad_dc.output


def test_configure_command_runs_as_a_real_process(tmp_path, fake_zoho):
    """The documented shell use: `flask --app wsgi configure …` with the secret piped in."""
    import os
    import subprocess
    import sys

    client_id, secret = fake_zoho.add_client()
    env = dict(os.environ, GATEWAY_ENV="development", GATEWAY_INSTANCE_PATH=str(tmp_path / "inst"),
               ZOHO_ACCOUNTS_URL=fake_zoho.url, ZOHO_API_URL=fake_zoho.url)
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    flask = [sys.executable, "-m", "flask", "--app", "wsgi"]
    subprocess.run(flask + ["init-db"], cwd=repo, env=env, check=True, capture_output=True)
    args = flask + ["configure", "--data-center", "us", "--client-id", client_id, "--client-secret-stdin",
                    "--grant-token", fake_zoho.new_grant_code(client_id), "--account-id", ACCOUNT]
    done = subprocess.run(args, cwd=repo, env=env, input=secret + "\n", capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"connected us {fake_zoho.url}\n"
    again = subprocess.run(args, cwd=repo, env=env, input=secret + "\n", capture_output=True, text=True)
    assert again.returncode != 0
    assert again.stderr.strip().splitlines() == ["Error: invalid_code: the grant token has expired or was already used; make a new one"]
    assert secret not in done.stdout + done.stderr + again.stdout + again.stderr


def test_readyz_says_when_the_stored_tokens_cannot_be_decrypted(make_app, zoho_settings, fake_zoho, tmp_path):
    """An operator dropped the old Fernet key before running rotate-keys: the probe says so."""
    from cryptography.fernet import Fernet

    state = f"sqlite:///{tmp_path}/shared-state.db"
    app = make_app(DATABASE_URL=state, **zoho_settings)
    client_id, secret = fake_zoho.add_client()
    assert save(app, fake_zoho, client_id, secret).ok
    assert "zoho_error" not in app.test_client().get("/readyz").get_json()
    other_keys = {**zoho_settings, "GATEWAY_FERNET_KEYS": Fernet.generate_key().decode()}
    body = make_app(DATABASE_URL=state, **other_keys).test_client().get("/readyz").get_json()
    assert body["zoho"] == "connected" and body["status"] == "ready"
    assert body["zoho_error"].startswith("cannot decrypt") and "rotate-keys" in body["zoho_error"]
