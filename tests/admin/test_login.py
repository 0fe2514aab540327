"""Admin login: required everywhere under /admin/, CSRF on every form, throttled failures,
the same answer whether or not a password is set, the environment's hash winning, safe redirects."""
from __future__ import annotations

import re
import time

import pytest
import sqlalchemy as sa
from werkzeug.security import generate_password_hash

from gateway.state import tables
from gateway import audit
from gateway.admin import auth
from tests.conftest import ADMIN_PASSWORD, AdminSession, csrf_token_from

# Every action the page offers; the url_map walk below must find at least these.
KNOWN_ADMIN_ENDPOINTS = {
    "admin.index", "admin.logout", "admin.retry_job", "admin.retry_all", "admin.push",
    "admin.rotate_webhook_secret", "admin.rotate_events_secret", "admin.notify", "admin.disconnect",
}


def admin_routes(app):
    """(endpoint, method, path) for every route under /admin except the login page itself."""
    routes = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/admin") or rule.endpoint == "admin.login":
            continue
        path = re.sub(r"<(?:[^:>]+:)?[^>]+>", "1", rule.rule)
        for method in sorted(rule.methods & {"GET", "POST"}):
            routes.append((rule.endpoint, method, path))
    return routes


def audit_rows(app):
    with app.extensions["gateway"].store.engine.connect() as conn:
        return conn.execute(sa.select(tables.audit_table)).all()


def strip_csrf(html: str) -> str:
    return re.sub(r'name="csrf_token"[^>]*value="[^"]+"', "", html)


def test_every_admin_page_and_action_needs_login(app, client):
    routes = admin_routes(app)
    assert KNOWN_ADMIN_ENDPOINTS <= {endpoint for endpoint, _, _ in routes}
    for endpoint, method, path in routes:
        if method == "GET":
            response = client.get(path)
        else:
            # A valid CSRF token (from the login page) so the POST reaches the login check itself.
            token = csrf_token_from(client.get("/admin/login").get_data(as_text=True))
            response = client.post(path, data={"csrf_token": token})
        assert response.status_code == 302, (endpoint, method, response.status_code)
        assert response.location.startswith("/admin/login"), (endpoint, method, response.location)
    assert audit_rows(app) == []  # nothing happened


def test_login_opens_the_page_and_logout_closes_it(admin, client):
    assert client.get("/admin/").status_code == 302
    response = admin.login()
    assert response.status_code == 302 and response.location == "/admin/"
    page = client.get("/admin/")
    assert page.status_code == 200 and "Status" in page.get_data(as_text=True)
    response = admin.post("/admin/logout", {})
    assert response.status_code == 302 and response.location == "/admin/login"
    assert client.get("/admin/").status_code == 302


def test_every_post_without_csrf_token_is_refused(app, admin, client):
    assert app.config["WTF_CSRF_ENABLED"] is not False
    admin.login()
    before = audit_rows(app)
    posts = [(e, p) for e, m, p in admin_routes(app) if m == "POST"] + [("admin.login", "/admin/login")]
    for endpoint, path in posts:
        response = client.post(path, data={"job_id": "1", "kind": "customers", "record_id": "1", "enabled": "on",
                                           "password": ADMIN_PASSWORD})
        assert response.status_code == 400, (endpoint, response.status_code)
        assert "security token" in response.get_data(as_text=True)
    assert audit_rows(app) == before  # no action ran
    assert client.get("/admin/").status_code == 200  # and the session is still logged in


def test_wrong_password_gets_the_same_answer_with_and_without_a_stored_password(make_app, monkeypatch):
    checks = []
    real_check = auth.check_password_hash
    monkeypatch.setattr(auth, "check_password_hash", lambda h, p: checks.append(h) or real_check(h, p))
    answers = []
    for stored in (None, ADMIN_PASSWORD):
        app = make_app()
        session = AdminSession(app, app.test_client())
        if stored:
            session.set_password(stored)
        response = session.login("not the password", set_password=False)
        answers.append((response.status_code, strip_csrf(response.get_data(as_text=True))))
    assert answers[0] == answers[1]
    assert answers[0][0] == 401 and auth.WRONG_PASSWORD.replace("'", "&#39;") in answers[0][1]
    # Both answers cost one real hash check: the no-password case checks a dummy hash of the same kind.
    assert len(checks) == 2 and checks[0].split("$")[0] == checks[1].split("$")[0]


def test_a_hash_in_the_environment_wins_over_the_stored_password(make_app):
    app = make_app(GATEWAY_ADMIN_PASSWORD_HASH=generate_password_hash("from the environment"))
    session = AdminSession(app, app.test_client())
    session.set_password("stored with the command")
    assert session.login("stored with the command", set_password=False).status_code == 401
    response = session.login("from the environment", set_password=False)
    assert response.status_code == 302 and response.location == "/admin/"


def test_failed_logins_are_throttled_per_address(app, client, admin):
    admin.set_password()
    for _ in range(auth.MAX_FAILURES):
        assert admin.login("wrong guess", set_password=False).status_code == 401
    # Even the right password is not checked now.
    blocked = admin.login(set_password=False)
    assert blocked.status_code == 429
    assert 1 <= int(blocked.headers["Retry-After"]) <= 60
    assert "Too many failed logins" in blocked.get_data(as_text=True)
    assert client.get("/admin/").status_code == 302
    # Another address is not affected.
    other = app.test_client()
    other.environ_base["REMOTE_ADDR"] = "198.51.100.23"
    response = AdminSession(app, other).login(set_password=False)
    assert response.status_code == 302 and response.location == "/admin/"


def test_the_throttle_holds_across_processes_sharing_the_state_store(make_app, tmp_path):
    first = make_app()
    second = make_app()  # same DATABASE_URL: another gunicorn worker
    AdminSession(first, first.test_client()).set_password()
    for _ in range(auth.MAX_FAILURES):
        AdminSession(first, first.test_client()).login("wrong", set_password=False)
    assert AdminSession(second, second.test_client()).login(set_password=False).status_code == 429


def test_throttle_rule_lets_attempts_through_once_the_window_has_passed():
    now = 1_000_000.0
    failures = [now - 50, now - 40, now - 30, now - 20, now - 10]
    blocked = auth.throttle_for(failures, now)
    assert blocked.blocked and blocked.retry_after == 10
    assert not auth.throttle_for(failures, now + 11).blocked
    assert not auth.throttle_for(failures[1:], now).blocked
    assert not auth.throttle_for([now - 300] * 20, now).blocked


def test_login_starts_a_fresh_session(app, client, admin):
    with client.session_transaction() as session:
        session["planted"] = "by someone else"
    admin.login()
    with client.session_transaction() as session:
        assert "planted" not in session
        assert session["admin"] is True
        assert abs(session["login_at"] - time.time()) < 60


def test_a_session_older_than_eight_hours_must_log_in_again(client, admin):
    admin.login()
    with client.session_transaction() as session:
        session["login_at"] = time.time() - 9 * 3600
    assert client.get("/admin/").status_code == 302


@pytest.mark.parametrize(
    "target, expected",
    [
        ("/admin/#dead-jobs", "/admin/#dead-jobs"),
        ("/admin/?", "/admin/"),
        ("/admin/zoho/connect", "/admin/zoho/connect"),
        ("https://evil.example/admin/", "/fallback"),
        ("//evil.example/admin/", "/fallback"),
        ("/\\evil.example", "/fallback"),
        ("/healthz", "/fallback"),
        ("javascript:alert(1)", "/fallback"),
        ("", "/fallback"),
        (None, "/fallback"),
    ],
)
def test_next_is_only_followed_to_admin_paths_on_this_site(target, expected):
    assert auth.safe_next(target, "/fallback") == expected


def test_login_follows_next_through_the_form(client, admin):
    response = client.get("/admin/?x=1")
    assert response.location == "/admin/login?next=/admin/?x%3D1"
    admin.set_password()
    page = client.get(response.location).get_data(as_text=True)
    assert 'name="next"' in page
    response = client.post("/admin/login", data={
        "password": ADMIN_PASSWORD, "csrf_token": csrf_token_from(page), "next": "/admin/?x=1"})
    assert response.location == "/admin/?x=1"
    client.post("/admin/logout", data={"csrf_token": csrf_token_from(client.get("/admin/").get_data(as_text=True))})
    page = client.get("/admin/login").get_data(as_text=True)
    response = client.post("/admin/login", data={
        "password": ADMIN_PASSWORD, "csrf_token": csrf_token_from(page), "next": "https://evil.example/"})
    assert response.location == "/admin/"


def test_logins_and_failures_are_logged_without_the_password(admin, gateway_logs):
    admin.set_password()
    admin.login("a wrong guess 123", set_password=False)
    admin.login(set_password=False)
    logs = gateway_logs()
    assert "admin login failed from 127.0.0.1" in logs
    assert "admin action=login who=admin@127.0.0.1" in logs
    assert "a wrong guess 123" not in logs and ADMIN_PASSWORD not in logs


def test_parallel_wrong_passwords_from_one_address_get_no_more_than_the_limit(make_app, state_db_url):
    """24 guesses at once: only MAX_FAILURES reach the password check, the rest are refused 429."""
    import threading

    app = make_app(DATABASE_URL=state_db_url)
    AdminSession(app, app.test_client()).set_password()
    clients = []
    for _ in range(24):
        client = app.test_client()
        clients.append((client, csrf_token_from(client.get("/admin/login").get_data(as_text=True))))
    start = threading.Barrier(len(clients))
    codes = []

    def guess(client, token):
        start.wait()
        codes.append(client.post("/admin/login", data={"password": "a wrong guess", "csrf_token": token}).status_code)

    threads = [threading.Thread(target=guess, args=pair) for pair in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(codes) == 24
    failed = codes.count(401)
    assert failed <= auth.MAX_FAILURES and failed + codes.count(429) == 24, codes
    # Each checked wrong guess counts; a refused one does not. (While it was being judged it did
    # count for the guesses beside it, so in a burst fewer than MAX_FAILURES, even none, may have
    # been checked: the safe side.) Once the limit is reached even the right password waits.
    assert len(audit.login_failures_since(app.extensions["gateway"], "127.0.0.1", time.time() - 60)) == failed
    right = AdminSession(app, app.test_client()).login(set_password=False).status_code
    assert right == (429 if failed == auth.MAX_FAILURES else 302)


def test_a_successful_login_does_not_count_as_a_failure(app):
    session = AdminSession(app, app.test_client())
    for _ in range(auth.MAX_FAILURES + 2):
        assert session.login().status_code == 302
    assert audit.login_failures_since(app.extensions["gateway"], "127.0.0.1", time.time() - 60) == []


def copied_session(app, client):
    """A second browser holding a copy of `client`'s session cookie."""
    thief = app.test_client()
    thief.set_cookie("session", client.get_cookie("session").value)
    return thief


def test_changing_the_password_ends_every_session(app, client, admin):
    from gateway.admin.auth import store_password as store_admin_password

    assert admin.login().status_code == 302
    thief = copied_session(app, client)
    assert thief.get("/admin/").status_code == 200  # the copy works while nothing changed
    store_admin_password(app.extensions["gateway"], "a new password, long enough")
    for browser in (client, thief):
        response = browser.get("/admin/")
        assert response.status_code == 302 and response.location.startswith("/admin/login")
    assert AdminSession(app, client).login("a new password, long enough").status_code == 302
    assert client.get("/admin/").status_code == 200


def test_a_logged_out_session_cookie_is_refused_even_when_replayed(app, client, admin):
    assert admin.login().status_code == 302
    thief = copied_session(app, client)
    other = AdminSession(app, app.test_client())  # another admin, logged in separately, stays logged in
    assert other.login(set_password=False).status_code == 302
    assert admin.post("/admin/logout", {}).status_code == 302
    response = thief.get("/admin/")
    assert response.status_code == 302 and response.location.startswith("/admin/login")
    assert other.client.get("/admin/").status_code == 200


def test_the_environment_hash_is_the_one_sessions_are_tied_to(make_app):
    app = make_app(GATEWAY_ADMIN_PASSWORD_HASH=generate_password_hash("from the environment"))
    session = AdminSession(app, app.test_client())
    assert session.login("from the environment", set_password=False).status_code == 302
    session.set_password("stored with the command")  # not the password in force: no session ends
    assert session.client.get("/admin/").status_code == 200


def test_many_addresses_together_are_capped_deployment_wide(app):
    AdminSession(app, app.test_client()).set_password()
    addresses = [f"203.0.113.{n}" for n in range(1, 30)]
    failures = 0
    for address in addresses:
        for _ in range(auth.MAX_FAILURES - 1):  # each address stays under its own limit
            client = app.test_client()
            client.environ_base["REMOTE_ADDR"] = address
            code = AdminSession(app, client).login("a wrong guess", set_password=False).status_code
            if code == 429:
                break
            assert code == 401
            failures += 1
        if failures >= auth.GLOBAL_MAX_FAILURES:
            break
    assert failures == auth.GLOBAL_MAX_FAILURES
    fresh = app.test_client()
    fresh.environ_base["REMOTE_ADDR"] = "198.51.100.200"  # never failed: the deployment-wide cap still holds
    blocked = AdminSession(app, fresh).login(set_password=False)
    assert blocked.status_code == 429 and "from many addresses" in blocked.get_data(as_text=True)
    assert 1 <= int(blocked.headers["Retry-After"]) <= 60


def test_a_refused_login_costs_at_most_one_small_write(app):
    """A throttled attempt writes nothing; a wrong password writes its one row (no prune, no delete)."""
    rt = app.extensions["gateway"]
    AdminSession(app, app.test_client()).set_password()
    writes = []

    def count(_conn, _cursor, statement, *_args):
        if statement.lstrip().split(None, 1)[0].upper() in ("INSERT", "UPDATE", "DELETE", "REPLACE"):
            writes.append(statement)

    for engine in {rt.store.engine, rt.store.write_engine}:
        sa.event.listen(engine, "before_cursor_execute", count)
    try:
        session = AdminSession(app, app.test_client())
        for _ in range(auth.MAX_FAILURES):
            writes.clear()
            assert session.login("a wrong guess", set_password=False).status_code == 401
            assert len(writes) == 1 and "gw_login_failures" in writes[0], writes
        for _ in range(3):
            writes.clear()
            assert session.login("a wrong guess", set_password=False).status_code == 429
            assert writes == []
    finally:
        for engine in {rt.store.engine, rt.store.write_engine}:
            sa.event.remove(engine, "before_cursor_execute", count)


def test_old_login_attempts_are_purged_by_the_retention_job(app):
    from gateway import maintenance

    rt = app.extensions["gateway"]
    audit.note_login_attempt(rt, "192.0.2.7", now=time.time() - 7200)
    audit.note_login_attempt(rt, "192.0.2.7")
    assert maintenance.purge(rt)["login_failures"] == 1
    assert len(audit.login_failures_since(rt, "192.0.2.7", 0)) == 1
