"""Settings as docs/settings.md says: production requires its secrets, development generates them once."""
import os
import stat
import subprocess
import sys

import pytest

from gateway import create_app
from gateway.errors import ConfigError
from gateway.settings import mysql_driver, normalize_database_url

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PRODUCTION_NAMES = ("SECRET_KEY", "GATEWAY_FERNET_KEYS", "DATABASE_URL", "OPS_DATABASE_URL")


def _clean_env(tmp_path, **extra):
    env = {k: v for k, v in os.environ.items() if k not in PRODUCTION_NAMES and not k.startswith("GATEWAY_")}
    env["GATEWAY_INSTANCE_PATH"] = str(tmp_path / "instance")
    env.update(extra)
    return env


def test_production_cli_refuses_without_settings_in_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", "init-db"],
        cwd=REPO, env=_clean_env(tmp_path), capture_output=True, text=True, timeout=60,
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for name in PRODUCTION_NAMES:
        assert name in lines[0]


def test_production_gunicorn_refuses_without_settings(tmp_path):
    result = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "gunicorn"), "--bind", "127.0.0.1:0", "wsgi:app"],
        cwd=REPO, env=_clean_env(tmp_path), capture_output=True, text=True, timeout=60,
    )
    assert result.returncode != 0
    assert "configuration error: production needs these settings" in result.stderr
    assert "Traceback" not in result.stderr


def test_production_app_names_each_missing_setting(tmp_path, monkeypatch):
    for name in PRODUCTION_NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("GATEWAY_ENV", raising=False)
    with pytest.raises(ConfigError, match="OPS_DATABASE_URL"):
        create_app({"INSTANCE_PATH": str(tmp_path), "SECRET_KEY": "x", "GATEWAY_FERNET_KEYS": "y",
                    "DATABASE_URL": "sqlite://"})


def test_development_secrets_are_generated_once_with_mode_0600(make_app, tmp_path):
    first = make_app()
    second = make_app()
    path = tmp_path / "instance" / "dev-secrets.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert first.config["SECRET_KEY"] == second.config["SECRET_KEY"]
    assert first.config["GATEWAY_FERNET_KEYS"] == second.config["GATEWAY_FERNET_KEYS"]


def test_environment_wins_over_instance_config(tmp_path, monkeypatch):
    instance = tmp_path / "instance"
    instance.mkdir()
    (instance / "config.py").write_text("GATEWAY_POLL_SECONDS = 99\nGATEWAY_RETENTION_DAYS = 7\n")
    monkeypatch.setenv("GATEWAY_POLL_SECONDS", "5")
    app = create_app({"INSTANCE_PATH": str(instance), "GATEWAY_ENV": "development",
                      "DATABASE_URL": f"sqlite:///{tmp_path}/s.db"})
    assert app.config["GATEWAY_POLL_SECONDS"] == 5
    assert app.config["GATEWAY_RETENTION_DAYS"] == 7


def test_bad_number_is_named(tmp_path):
    with pytest.raises(ConfigError, match="GATEWAY_ZOHO_CONCURRENCY must be a whole number"):
        create_app({"INSTANCE_PATH": str(tmp_path), "GATEWAY_ENV": "development", "GATEWAY_ZOHO_CONCURRENCY": "five"})


@pytest.mark.parametrize("given, expected", [
    ("postgres://u:p@h:5432/db", "postgresql+psycopg://u:p@h:5432/db"),
    ("postgresql://u@h/db", "postgresql+psycopg://u@h/db"),
    ("mysql://root@127.0.0.1/db", f"mysql+{mysql_driver()}://root@127.0.0.1/db?charset=utf8mb4"),
    ("mariadb://root@127.0.0.1/db?ssl=1", f"mysql+{mysql_driver()}://root@127.0.0.1/db?ssl=1&charset=utf8mb4"),
    ("mysql+pymysql://root@127.0.0.1/db", "mysql+pymysql://root@127.0.0.1/db?charset=utf8mb4"),
    ("mysql+pymysql://root@127.0.0.1/db?charset=latin1", "mysql+pymysql://root@127.0.0.1/db?charset=latin1"),
    ("sqlite:////tmp/x.db", "sqlite:////tmp/x.db"),
])
def test_heroku_style_database_urls_map_to_installed_drivers(given, expected):
    assert normalize_database_url(given) == expected


@pytest.fixture
def without_mysqlclient(monkeypatch):
    """As on a machine where mysqlclient could not be built (no MariaDB/MySQL client headers)."""
    monkeypatch.setitem(sys.modules, "MySQLdb", None)  # `import MySQLdb` raises ImportError
    mysql_driver.cache_clear()
    yield
    mysql_driver.cache_clear()


def test_mysql_urls_fall_back_to_pymysql_without_mysqlclient(without_mysqlclient):
    assert normalize_database_url("mysql://u@h/db") == "mysql+pymysql://u@h/db?charset=utf8mb4"
    with pytest.raises(ConfigError, match=r"OPS_DATABASE_URL asks for mysqlclient \(mysql\+mysqldb://\), which is "
                                          r"not installed") as refused:
        normalize_database_url("mysql+mysqldb://u:hunter2@h/db", "OPS_DATABASE_URL")
    assert "hunter2" not in str(refused.value)


def test_mysql_urls_take_mysqlclient_where_it_is_installed():
    pytest.importorskip("MySQLdb", reason="mysqlclient is not installed here (optional: docs/settings.md)")
    assert normalize_database_url("mysql://u@h/db") == "mysql+mysqldb://u@h/db?charset=utf8mb4"
    assert normalize_database_url("mysql+mysqldb://u@h/db") == "mysql+mysqldb://u@h/db?charset=utf8mb4"


def test_unknown_database_scheme_is_refused():
    with pytest.raises(ConfigError, match="unsupported database URL scheme 'oracle'"):
        normalize_database_url("oracle://x")


def test_zoho_date_order_is_day_first_by_default_and_checked(tmp_path):
    base = {"INSTANCE_PATH": str(tmp_path), "GATEWAY_ENV": "development"}
    assert create_app(base).config["GATEWAY_ZOHO_DATE_ORDER"] == "dmy"
    assert create_app({**base, "GATEWAY_ZOHO_DATE_ORDER": " MDY "}).config["GATEWAY_ZOHO_DATE_ORDER"] == "mdy"
    with pytest.raises(ConfigError, match="GATEWAY_ZOHO_DATE_ORDER must be 'dmy' or 'mdy'"):
        create_app({**base, "GATEWAY_ZOHO_DATE_ORDER": "ymd"})


def test_the_api_backend_refuses_a_poller_turned_off(tmp_path):
    """OnPrintShop's API has no webhooks: with the poller off, its changes would never reach Zoho."""
    base = {"INSTANCE_PATH": str(tmp_path), "GATEWAY_ENV": "development", "OPS_BACKEND": "api"}
    assert create_app({**base, "GATEWAY_POLL_SECONDS": "3600"}).config["GATEWAY_POLL_SECONDS"] == 3600
    with pytest.raises(ConfigError, match="OPS_BACKEND=api needs the change poller: set GATEWAY_POLL_SECONDS above 0"):
        create_app({**base, "GATEWAY_POLL_SECONDS": "0"})
    with pytest.raises(ConfigError, match=r"GATEWAY_POLL_SECONDS above 0 \(not 0;"):
        create_app({**base, "GATEWAY_POLL_SECONDS": ""})  # empty: off, too
    assert create_app({**base, "OPS_BACKEND": "database", "GATEWAY_POLL_SECONDS": "0"}).config["GATEWAY_POLL_SECONDS"] == 0


def test_an_empty_environment_variable_overrides_instance_config_with_the_default(tmp_path):
    from gateway.settings import load

    instance = tmp_path / "instance"
    instance.mkdir()
    (instance / "config.py").write_text(
        "GATEWAY_DAILY_CALL_BUDGET = 100\nGATEWAY_POLL_SECONDS = 99\nGATEWAY_RETENTION_DAYS = 7\n"
        "SECRET_KEY = 'k' * 48\nGATEWAY_FERNET_KEYS = 'f'\nDATABASE_URL = 'sqlite://'\nOPS_DATABASE_URL = 'sqlite://'\n")
    values = load(str(instance), environ={"GATEWAY_DAILY_CALL_BUDGET": "", "GATEWAY_POLL_SECONDS": ""})
    assert values["GATEWAY_DAILY_CALL_BUDGET"] is None  # the budget in the file is lifted: unlimited
    assert values["GATEWAY_POLL_SECONDS"] == 30  # the built-in default, not the file's 99
    assert values["GATEWAY_RETENTION_DAYS"] == 7  # not in the environment: the file's value stands
    # a required production setting set to nothing is missing, whatever the file says
    with pytest.raises(ConfigError, match="production needs these settings in the environment: SECRET_KEY"):
        load(str(instance), environ={"SECRET_KEY": ""})
    assert load(str(instance), environ={})["SECRET_KEY"] == "k" * 48


@pytest.mark.parametrize("text, expected", [
    ("GATEWAY_POLL_SECONDS = 30\nSECRET_KEY = kP3xTheRealSecretValue123\n",
     "NameError on line 2 (a value not in quotes?)"),
    ("SECRET_KEY = 'kP3xTheRealSecretValue123\n", "SyntaxError on line 1"),
    ("SECRET_KEY = 'kP3xTheRealSecretValue123' + 1\n", "TypeError on line 1"),
])
def test_a_broken_instance_config_says_where_without_echoing_a_secret(tmp_path, text, expected):
    from gateway.settings import load

    instance = tmp_path / "instance"
    instance.mkdir()
    (instance / "config.py").write_text(text)
    with pytest.raises(ConfigError) as caught:
        load(str(instance), environ={})
    message = str(caught.value)
    assert expected in message and "config.py" in message
    assert "kP3x" not in message
