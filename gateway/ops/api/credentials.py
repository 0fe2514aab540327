"""The OnPrintShop API client in force: store URL, client id and secret.

Each from the environment (`OPS_API_*`, which wins field by field), else as the admin saved it:
the URL in a setting, the id and secret only in the vault."""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

from ...errors import ConfigError
from ...settings import ops_api_url
from ...vault import last4

SETTING = "ops_api.connection"  # {"url", "client_id_last4", "secret_last4", "saved_at"}
SECRET_CLIENT_ID = "ops_api.client_id"
SECRET_CLIENT_SECRET = "ops_api.client_secret"
ENV_NAMES = {"url": "OPS_API_URL", "client_id": "OPS_API_CLIENT_ID", "client_secret": "OPS_API_CLIENT_SECRET"}


@dataclass(frozen=True)
class Credentials:
    url: str
    client_id: str
    client_secret: str

    @property
    def fingerprint(self) -> str:
        """Names this client (a token minted for another one is never used for it)."""
        return hashlib.sha256(f"{self.url}\n{self.client_id}\n{self.client_secret}".encode()).hexdigest()[:32]

    @property
    def token_url(self) -> str:
        return self.url + "/api/oauth/token"

    @property
    def graphql_url(self) -> str:
        return self.url + "/api/"


def current(config, store, vault) -> Credentials | None:
    """The client in force (environment first), or None while any of the three is missing."""
    values = {key: str(config.get(env) or "").strip() for key, env in ENV_NAMES.items()}
    if not all(values.values()):
        with store.engine.connect() as conn:
            saved = store.get_setting(SETTING, None, conn=conn) or {}
            values["url"] = values["url"] or str(saved.get("url") or "")
            values["client_id"] = values["client_id"] or (vault.get(conn, SECRET_CLIENT_ID) or "")
            values["client_secret"] = values["client_secret"] or (vault.get(conn, SECRET_CLIENT_SECRET) or "")
    if not all(values.values()):
        return None
    return Credentials(**values)


def check(url: str, client_id: str, client_secret: str) -> Credentials:
    """The three values, checked; ConfigError names the one at fault."""
    client_id, client_secret = (client_id or "").strip(), (client_secret or "").strip()
    if not url or not url.strip():
        raise ConfigError("url: give the store's base URL, such as https://shop.example.com")
    url = ops_api_url(url, "url")
    for name, value in (("client_id", client_id), ("client_secret", client_secret)):
        if not value:
            raise ConfigError(f"{name}: it is required (OnPrintShop's admin gives the API client id and secret)")
        if len(value) > 500 or any(ch.isspace() or ord(ch) < 32 for ch in value):
            raise ConfigError(f"{name}: at most 500 characters, without spaces or control characters")
    return Credentials(url, client_id, client_secret)


def save(store, vault, creds: Credentials) -> None:
    """Keep the client: the URL as a setting, the id and secret encrypted."""
    with store.immediate() as conn:
        vault.put(conn, SECRET_CLIENT_ID, creds.client_id)
        vault.put(conn, SECRET_CLIENT_SECRET, creds.client_secret)
        store.set_setting(SETTING, {"url": creds.url, "client_id_last4": last4(creds.client_id),
                                    "secret_last4": last4(creds.client_secret), "saved_at": time.time()}, conn=conn)


def shown(config, store) -> dict:
    """What the admin page may show: the URL, the last four characters of the id and secret, and
    which values the environment sets (those win over the saved ones)."""
    saved = store.get_setting(SETTING, None) or {}
    env = {key: bool(str(config.get(name) or "").strip()) for key, name in ENV_NAMES.items()}
    return {
        "url": str(config.get("OPS_API_URL") or "") or saved.get("url"),
        "client_id_last4": last4(str(config.get("OPS_API_CLIENT_ID") or "")) if env["client_id"] else saved.get("client_id_last4"),
        "secret_last4": last4(str(config.get("OPS_API_CLIENT_SECRET") or "")) if env["client_secret"] else saved.get("secret_last4"),
        "from_environment": [ENV_NAMES[key] for key, set_there in env.items() if set_there],
        "saved_at": saved.get("saved_at"),
    }
