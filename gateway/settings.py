"""Settings: defaults, then `instance/config.py`, then the environment (which wins); what production
requires and development generates, database URLs mapped to the drivers (docs/settings.md)."""
from __future__ import annotations

import base64
import functools
import json
import os
import secrets as pysecrets

from urllib.parse import urlsplit

from limits import parse_many
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from .errors import ConfigError

MYSQL_SCHEMES = ("mysql+pymysql://", "mysql+mysqldb://")

# Every setting name the gateway reads, with its default (None: computed or required).
DEFAULTS: dict[str, object] = {
    "GATEWAY_ENV": "production",
    "SECRET_KEY": None,
    "GATEWAY_FERNET_KEYS": None,
    "DATABASE_URL": None,
    "OPS_DATABASE_URL": None,
    "OPS_BACKEND": "database",
    "OPS_API_URL": None,
    "OPS_API_CLIENT_ID": None,
    "OPS_API_CLIENT_SECRET": None,
    "OPS_API_RATE_LIMIT": "120 per minute",
    "OPS_API_NOTIFY_CUSTOMER": False,
    "OPS_TIMEZONE": "UTC",
    "GATEWAY_ZOHO_TIMEZONE": "UTC",
    "GATEWAY_ZOHO_DATE_ORDER": "dmy",
    "GATEWAY_PUBLIC_URL": None,
    "GATEWAY_PROXY_HOPS": 0,
    "ZOHO_ACCOUNTS_URL": None,
    "ZOHO_API_URL": None,
    "GATEWAY_RUN_WORKER": True,
    "GATEWAY_ZOHO_CONCURRENCY": 5,
    "GATEWAY_DAILY_CALL_BUDGET": None,
    "GATEWAY_POLL_SECONDS": 30,
    "GATEWAY_WEBHOOK_RATE_LIMIT": "600 per minute",
    "RATELIMIT_STORAGE_URI": "memory://",
    "GATEWAY_RETENTION_DAYS": 30,
    "GATEWAY_LOG_FORMAT": "text",
    "GATEWAY_ADMIN_PASSWORD_HASH": None,
    "GATEWAY_WRITE_BACK_EMAIL": False,
}

INT_SETTINGS = {
    "GATEWAY_PROXY_HOPS",
    "GATEWAY_ZOHO_CONCURRENCY",
    "GATEWAY_DAILY_CALL_BUDGET",
    "GATEWAY_POLL_SECONDS",
    "GATEWAY_RETENTION_DAYS",
}
BOOL_SETTINGS = {"GATEWAY_RUN_WORKER", "GATEWAY_WRITE_BACK_EMAIL", "OPS_API_NOTIFY_CUSTOMER"}
REQUIRED_IN_PRODUCTION = ("SECRET_KEY", "GATEWAY_FERNET_KEYS", "DATABASE_URL")
OPS_BACKENDS = ("database", "api")
MAX_PERMITS = 1000  # a larger rate limit is kept as the same rate over a shorter window
DEV_SECRETS_FILE = "dev-secrets.json"
MIN_SECRET_KEY_LENGTH = 32  # it signs the admin session: a guessable key is a forged login


def load(instance_path: str, environ: dict | None = None, test_config: dict | None = None) -> dict:
    """Return the gateway's settings as a dict, validated; raise ConfigError with one line."""
    environ = os.environ if environ is None else environ
    values: dict[str, object] = dict(DEFAULTS)
    values.update(_read_instance_config(instance_path))
    for name in DEFAULTS:
        if name in environ:
            # Set but empty means "back to the default", so `GATEWAY_DAILY_CALL_BUDGET=` can lift a
            # budget from config.py; a required production setting left empty is then missing.
            values[name] = environ[name] if environ[name] != "" else DEFAULTS[name]
    if test_config:
        values.update(test_config)

    env = str(values["GATEWAY_ENV"]).strip().lower()
    if env not in ("production", "development"):
        raise ConfigError(f"GATEWAY_ENV must be 'production' or 'development', not {env!r}")
    values["GATEWAY_ENV"] = env

    for name in INT_SETTINGS:
        values[name] = _as_int(name, values[name])
    for name in BOOL_SETTINGS:
        values[name] = _as_bool(name, values[name])
    if values["GATEWAY_LOG_FORMAT"] not in ("text", "json"):
        raise ConfigError("GATEWAY_LOG_FORMAT must be 'text' or 'json'")
    # Whether 11/05/2026 is 11 May or 5 November cannot be told from the date: the admin says.
    order = str(values["GATEWAY_ZOHO_DATE_ORDER"] or "").strip().lower()
    if order not in ("dmy", "mdy"):
        raise ConfigError(f"GATEWAY_ZOHO_DATE_ORDER must be 'dmy' or 'mdy' (day or month first), not {values['GATEWAY_ZOHO_DATE_ORDER']!r}")
    values["GATEWAY_ZOHO_DATE_ORDER"] = order

    backend = str(values["OPS_BACKEND"] or "").strip().lower()
    if backend not in OPS_BACKENDS:
        raise ConfigError(f"OPS_BACKEND must be 'database' or 'api', not {values['OPS_BACKEND']!r}")
    values["OPS_BACKEND"] = backend
    if backend == "api" and not (values["GATEWAY_POLL_SECONDS"] or 0) > 0:
        # OnPrintShop's API has no webhooks: its changes are found by the poller, and pushes read what it read.
        raise ConfigError("OPS_BACKEND=api needs the change poller: set GATEWAY_POLL_SECONDS above 0 "
                          f"(not {values['GATEWAY_POLL_SECONDS'] or 0}; 3600 polls once an hour)")
    values["OPS_API_RATE_LIMIT"] = str(values["OPS_API_RATE_LIMIT"]).strip()
    rate_limit(values["OPS_API_RATE_LIMIT"])  # checked now: a wrong one stops start-up naming it
    if values["OPS_API_URL"]:
        values["OPS_API_URL"] = ops_api_url(str(values["OPS_API_URL"]), "OPS_API_URL")

    if env == "development":
        generated = ensure_dev_secrets(instance_path)
        for name, value in generated.items():
            if not values.get(name):
                values[name] = value
        values["DATABASE_URL"] = values["DATABASE_URL"] or "sqlite:///" + os.path.join(instance_path, "gateway.db")
        values["OPS_DATABASE_URL"] = values["OPS_DATABASE_URL"] or "sqlite:///" + os.path.join(instance_path, "ops.db")
    else:
        required = REQUIRED_IN_PRODUCTION + (("OPS_DATABASE_URL",) if backend == "database" else ())
        missing = [name for name in required if not values.get(name)]
        if missing:
            raise ConfigError(
                "production needs these settings in the environment: " + ", ".join(missing)
                + " (set GATEWAY_ENV=development only for local use)"
            )
        if len(str(values["SECRET_KEY"])) < MIN_SECRET_KEY_LENGTH:
            raise ConfigError(
                f"SECRET_KEY is too short: use at least {MIN_SECRET_KEY_LENGTH} random characters, e.g. "
                "python -c 'import secrets; print(secrets.token_urlsafe(48))'"
            )

    values["DATABASE_URL"] = normalize_database_url(str(values["DATABASE_URL"]), "DATABASE_URL")
    if values["OPS_DATABASE_URL"]:
        values["OPS_DATABASE_URL"] = normalize_database_url(str(values["OPS_DATABASE_URL"]), "OPS_DATABASE_URL")
    values["GATEWAY_FERNET_KEYS"] = [k.strip() for k in str(values["GATEWAY_FERNET_KEYS"]).split(",") if k.strip()]
    return values


@functools.cache
def mysql_driver() -> str:
    """The MySQL driver for `mysql://` and `mariadb://` URLs: mysqlclient (`mysqldb`, a C
    extension: less CPU per statement, docs/performance.md) where it is installed and loads,
    else PyMySQL."""
    try:
        import MySQLdb  # noqa: F401 (only whether it loads: its C library may be missing)
    except ImportError:
        return "pymysql"
    return "mysqldb"


def normalize_database_url(url: str, name: str = "DATABASE_URL") -> str:
    """Map Heroku-style URLs to the installed drivers (psycopg 3; mysqlclient or PyMySQL) and check
    the URL parses; errors name the setting, never echo the URL (it may hold a password)."""
    url = url.strip()
    for prefix, replacement in (
        ("postgres://", "postgresql+psycopg://"),
        ("postgresql://", "postgresql+psycopg://"),
        ("mysql://", None),
        ("mariadb://", None),
        ("mariadb+pymysql://", "mysql+pymysql://"),
        ("mariadb+mysqldb://", "mysql+mysqldb://"),
    ):
        if url.startswith(prefix):
            url = (replacement or f"mysql+{mysql_driver()}://") + url[len(prefix):]
            break
    if url.startswith(MYSQL_SCHEMES) and "charset=" not in url:
        url += ("&" if "?" in url else "?") + "charset=utf8mb4"
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme not in ("sqlite", "postgresql+psycopg") + tuple(s[:-3] for s in MYSQL_SCHEMES):
        shown = f"{scheme!r}" if scheme else "none (expected scheme://…)"
        raise ConfigError(f"{name}: unsupported database URL scheme {shown}: use sqlite:///…, postgres://… or mysql://…")
    if scheme == "mysql+mysqldb" and mysql_driver() != "mysqldb":
        raise ConfigError(f"{name} asks for mysqlclient (mysql+mysqldb://), which is not installed: "
                          "install it (docs/settings.md) or use mysql://… (PyMySQL)")
    try:
        parsed = make_url(url)
        _ = parsed.port  # a non-numeric port only fails when read
    except (ArgumentError, ValueError):
        raise ConfigError(f"{name} is not a valid database URL (check the host, port and escaping of the password)") from None
    return url


def rate_limit(text: str) -> tuple[int, float]:
    """(calls, seconds) of a flask-limiter style limit such as "120 per minute"; ConfigError names
    OPS_API_RATE_LIMIT. Over MAX_PERMITS calls, the same rate over a proportionally shorter window."""
    try:
        items = parse_many(text)
    except ValueError:
        items = []
    if len(items) != 1 or items[0].amount < 1:
        raise ConfigError(f"OPS_API_RATE_LIMIT must be one limit such as '120 per minute' or '2/second', not {text!r}")
    calls, seconds = items[0].amount, float(items[0].get_expiry())
    if calls > MAX_PERMITS:
        seconds, calls = seconds * MAX_PERMITS / calls, MAX_PERMITS
    return calls, seconds


def ops_api_url(text: str, name: str = "OPS_API_URL") -> str:
    """The store's base URL, without a trailing `/api` or `/` (the token and GraphQL paths are added to it)."""
    url = text.strip().rstrip("/")
    if url.lower().endswith("/api"):
        url = url[:-4].rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ConfigError(f"{name} must be the store's base URL, such as https://shop.example.com")
    return url


def ensure_dev_secrets(instance_path: str) -> dict:
    """Generate development secrets once (exclusive create, mode 0600); every process reads the same file."""
    os.makedirs(instance_path, exist_ok=True)
    path = os.path.join(instance_path, DEV_SECRETS_FILE)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        generated = {
            "SECRET_KEY": pysecrets.token_urlsafe(48),
            "GATEWAY_FERNET_KEYS": base64.urlsafe_b64encode(os.urandom(32)).decode(),
        }
        with os.fdopen(fd, "w") as fh:
            json.dump(generated, fh)
        return generated
    for _ in range(50):  # another process may be between create and write
        try:
            with open(path) as fh:
                return json.load(fh)
        except json.JSONDecodeError:
            import time

            time.sleep(0.05)
    raise ConfigError(f"{path} is not valid JSON: delete it to generate new development secrets")


def _read_instance_config(instance_path: str) -> dict:
    path = os.path.join(instance_path, "config.py")
    if not os.path.exists(path):
        return {}
    namespace: dict = {}
    try:
        with open(path) as fh:
            exec(compile(fh.read(), path, "exec"), namespace)
    except Exception as exc:  # a broken config file must say where, in one line
        raise ConfigError(f"{path}: {_config_error(exc, path)}") from None
    return {k: v for k, v in namespace.items() if k in DEFAULTS}


def _config_error(exc: Exception, path: str) -> str:
    """The kind of error in instance/config.py and its line, never its message: the file holds
    secrets, and `SECRET_KEY = kP3x…` without quotes fails as "name 'kP3x…' is not defined"."""
    if isinstance(exc, SyntaxError):
        return f"{exc.__class__.__name__} on line {exc.lineno} (a value not in quotes, a missing bracket?)"
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == path:
            line = tb.tb_lineno
        tb = tb.tb_next
    where = f" on line {line}" if line else ""
    hint = " (a value not in quotes?)" if isinstance(exc, NameError) else ""
    return f"{exc.__class__.__name__}{where}{hint}"


def _as_int(name: str, value: object) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a whole number, not {value!r}") from None


def _as_bool(name: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"{name} must be 1 or 0, not {value!r}")
