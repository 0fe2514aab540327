"""What a running app holds: the state store, the vault, the OnPrintShop database, the Zoho side.

One `Runtime` per app (in `app.extensions["gateway"]`); `current()` returns the one of the
current app. Parts that cost a connection or a thread are made lazily, on first use.
"""
from __future__ import annotations

import threading

from flask import current_app

from .store import Store
from .vault import Vault


class Runtime:
    def __init__(self, app):
        self.app = app
        self.config = app.config
        self.store = Store(app.config["DATABASE_URL"])
        self.vault = Vault(app.config["GATEWAY_FERNET_KEYS"])
        self._lock = threading.RLock()  # zoho builds tokens under the same lock
        self._ops = None
        self._tokens = None
        self._zoho = None

    @property
    def ops(self):
        """The OnPrintShop database (gateway.ops.OpsDatabase), opened on first use."""
        if self._ops is None:
            with self._lock:
                if self._ops is None:
                    from .ops.database import OpsDatabase

                    self._ops = OpsDatabase.from_config(self.config)
        return self._ops

    @property
    def tokens(self):
        """The deployment-wide Zoho token service."""
        if self._tokens is None:
            with self._lock:
                if self._tokens is None:
                    from .zoho.tokens import TokenService

                    self._tokens = TokenService(self.store, self.vault, self.config)
        return self._tokens

    @property
    def zoho(self):
        """The Zoho CRM records API client (uses the shared token)."""
        if self._zoho is None:
            with self._lock:
                if self._zoho is None:
                    from .zoho.client import ZohoClient

                    self._zoho = ZohoClient(self.tokens, self.config, runtime=self)
        return self._zoho

    def close(self) -> None:
        self.store.dispose()
        if self._ops is not None:
            self._ops.dispose()


def current() -> Runtime:
    return current_app.extensions["gateway"]
