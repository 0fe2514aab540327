"""What an operator meets when something around the gateway is wrong: one clear line, never a
traceback or a secret; logs that hide one-time credentials however they are spelled."""
import os
import socket
import subprocess
import sys
import uuid

import pytest
from cryptography.fernet import Fernet

from gateway import create_app
from gateway.errors import ConfigError
from gateway.logs import mask_query, request_id_from
from tests.inbound.conftest import Gateway

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def production(tmp_path, **overrides):
    config = {
        "INSTANCE_PATH": str(tmp_path / "instance"), "GATEWAY_ENV": "production",
        "SECRET_KEY": "k" * 48, "GATEWAY_FERNET_KEYS": Fernet.generate_key().decode(),
        "DATABASE_URL": f"sqlite:///{tmp_path}/state.db", "OPS_DATABASE_URL": f"sqlite:///{tmp_path}/ops.db",
    }
    config.update(overrides)
    return create_app(config)


def test_a_malformed_database_url_is_named_without_echoing_its_password(tmp_path):
    with pytest.raises(ConfigError) as caught:
        production(tmp_path, DATABASE_URL="postgres://gw:hunter2-password@db.example.com:abc/gw")
    assert "DATABASE_URL is not a valid database URL" in str(caught.value)
    assert "hunter2" not in str(caught.value)
    with pytest.raises(ConfigError, match="OPS_DATABASE_URL: unsupported database URL scheme"):
        production(tmp_path, OPS_DATABASE_URL="postgres:/ops")


def test_production_refuses_a_short_secret_key(tmp_path):
    with pytest.raises(ConfigError, match="SECRET_KEY is too short"):
        production(tmp_path, SECRET_KEY="short")
    assert production(tmp_path).config["SECRET_KEY"] == "k" * 48


def test_an_unusable_rate_limit_store_is_one_line(tmp_path):
    with pytest.raises(ConfigError, match="RATELIMIT_STORAGE_URI cannot be used"):
        production(tmp_path, RATELIMIT_STORAGE_URI="bogus://counters")


def _redis_answers() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.5):
            return True
    except OSError:
        return False


def test_webhook_rate_limit_counts_across_processes_in_redis(make_app):
    if not _redis_answers():
        pytest.skip("no Redis on 127.0.0.1:6379: shared rate-limit counters not tested")
    limit = f"2 per minute;{uuid.uuid4().hex[:6]}"[: len("2 per minute")]
    uri = "redis://127.0.0.1:6379/15"
    settings = dict(RATELIMIT_ENABLED=True, GATEWAY_WEBHOOK_RATE_LIMIT=limit, RATELIMIT_STORAGE_URI=uri)
    first = Gateway(make_app(**settings))
    first.app.extensions["limiter"]  # the limiter is bound
    from gateway.web.security import limiter

    limiter.reset()
    address = {"REMOTE_ADDR": f"10.{uuid.uuid4().int % 250}.1.1"}
    body = {"id": "9014", "ops_id": "1", "payment_status": "Paid"}
    headers = {"X-Webhook-Token": "a wrong guess"}  # only refused requests are counted
    assert first.client.post("/webhooks/zoho/deals", data=body, headers=headers, environ_base=address).status_code == 401
    second = make_app(**settings)  # another process's app: same counters in Redis
    client = second.test_client()
    assert client.post("/webhooks/zoho/deals", data=body, headers=headers, environ_base=address).status_code == 401
    third = client.post("/webhooks/zoho/deals", data=body, headers=headers, environ_base=address)
    assert third.status_code == 429 and third.get_json()["error"]


def test_a_rate_limit_store_that_goes_away_does_not_refuse_deliveries(make_app):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there
    gw = Gateway(make_app(RATELIMIT_ENABLED=True, RATELIMIT_STORAGE_URI=f"redis://127.0.0.1:{port}/0"))
    r = gw.post("deals", {"id": "9016", "ops_id": "1", "payment_status": "Paid"})
    assert r.status_code == 200, r.get_json()


@pytest.mark.parametrize("query, secret", [
    ("token=s3cret-value", "s3cret-value"),
    ("%74oken=s3cret-value&x=1", "s3cret-value"),  # Werkzeug decodes the name: so must the mask
    ("TOKEN=s3cret-value", "s3cret-value"),
    ("code=1000.grant-code&state=st4te&location=eu", "grant-code"),
    ("next=/admin/zoho/callback%3Fcode%3D1000.grant-code%26state%3Dst4te", "grant-code"),
])
def test_access_log_masks_one_time_credentials(query, secret):
    assert secret not in mask_query(query)
    assert "st4te" not in mask_query(query)


def test_percent_encoded_token_is_masked_in_the_real_access_line(make_app, gateway_logs):
    gw = Gateway(make_app())
    r = gw.client.post(f"/webhooks/zoho/deals?%74oken={gw.secret}", data={"id": "9017", "ops_id": "1", "payment_status": "Paid"})
    assert r.status_code == 200
    assert gw.secret not in gateway_logs()
    assert "token=***" in gateway_logs()


def test_a_forged_request_id_cannot_write_into_log_lines():
    assert request_id_from("abc-123_X.y") == "abc-123_X.y"
    forged = request_id_from("x status=200 user=admin")
    assert " " not in forged and "admin" not in forged


def _flask(tmp_path, *args, env=None):
    environ = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    environ.update({"GATEWAY_ENV": "development", "GATEWAY_INSTANCE_PATH": str(tmp_path / "instance")}, **(env or {}))
    return subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", *args], cwd=REPO, env=environ,
                          capture_output=True, text=True, timeout=60)


def test_commands_before_init_db_say_so_in_one_line(tmp_path):
    result = _flask(tmp_path, "queue", "status", "--json",
                    env={"DATABASE_URL": f"sqlite:///{tmp_path}/empty.db"})
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "run `flask --app wsgi init-db` first" in lines[0], result.stderr


def test_commands_with_the_state_store_down_say_so_in_one_line(tmp_path):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    result = _flask(tmp_path, "webhook-secret", env={"DATABASE_URL": f"mysql://root@127.0.0.1:{port}/nothing"})
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "the database did not answer as expected" in lines[0], result.stderr


def test_database_errors_do_not_carry_customer_values(tmp_path):
    import sqlalchemy as sa

    from gateway.state.engine import make_engine

    engine = make_engine(f"sqlite:///{tmp_path}/x.db")
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE t (email VARCHAR(100) UNIQUE)"))
        conn.execute(sa.text("INSERT INTO t VALUES (:e)"), {"e": "zoe@example.com"})
    with pytest.raises(sa.exc.IntegrityError) as caught, engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO t VALUES (:e)"), {"e": "zoe@example.com"})
    assert "zoe@example.com" not in str(caught.value)
    engine.dispose()


def test_sqlite_state_store_commits_are_durable_across_power_loss(tmp_path):
    from gateway.state.engine import make_engine

    engine = make_engine(f"sqlite:///{tmp_path}/x.db")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
    engine.dispose()
