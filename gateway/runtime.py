"""What a running app holds (`app.extensions["gateway"]`): the state store, the vault, OnPrintShop,
the Zoho side; parts that cost a connection or hold per-process state are made on first use."""
from __future__ import annotations

import threading

from . import ops
from .state import Store
from .vault import Vault
from .zoho.client import ZohoClient
from .zoho.gate import Gate
from .zoho.tokens import TokenService


class Runtime:
    def __init__(self, config, instance_path: str):
        self.config = config
        self.instance_path = instance_path
        self.store = Store(config["DATABASE_URL"])
        self.vault = Vault(config["GATEWAY_FERNET_KEYS"])
        self._lock = threading.RLock()
        self._parts: dict[str, object] = {}

    def part(self, name: str, make):
        """The part named `name`, made by `make()` on first use (once per process)."""
        return self._once(name, make)

    def _once(self, name: str, make):
        part = self._parts.get(name)
        if part is None:
            with self._lock:
                part = self._parts.get(name)
                if part is None:
                    part = self._parts[name] = make()
        return part

    @property
    def ops(self) -> ops.Backend:
        """OnPrintShop, through the backend the settings choose."""
        return self._once("ops", lambda: ops.open_backend(self.config, self.instance_path, self.store, self.vault))

    @property
    def tokens(self) -> TokenService:
        """The deployment-wide Zoho token service."""
        return self._once("tokens", lambda: TokenService(self.store, self.vault, self.config))

    @property
    def zoho(self) -> ZohoClient:
        """The Zoho CRM API client (the shared token, the gate)."""
        return self._once("zoho", lambda: ZohoClient(self.tokens, self.config, runtime=self))

    @property
    def zoho_gate(self) -> Gate:
        """Deployment-wide Zoho concurrency slots and the daily call budget."""
        return self._once("zoho_gate", lambda: Gate(self.store, self.config.get("GATEWAY_ZOHO_CONCURRENCY") or 5,
                                                    self.config.get("GATEWAY_DAILY_CALL_BUDGET")))

    def close(self) -> None:
        self.store.dispose()
        if "ops" in self._parts:
            self.ops.dispose()
