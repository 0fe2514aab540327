"""Error types with messages a person can act on; `gateway.web.errors` turns them into answers."""
from __future__ import annotations


class ConfigError(Exception):
    """A setting is missing or wrong; the message is one line naming it."""


class VaultError(Exception):
    """A stored secret cannot be decrypted with the configured keys."""


class RequestError(Exception):
    """A request we refuse: status code, a message, and optionally the parameter at fault."""

    status = 400

    def __init__(self, message: str, *, status: int | None = None, parameter: str | None = None):
        super().__init__(message)
        self.message = message
        self.parameter = parameter
        if status is not None:
            self.status = status

    def body(self) -> dict:
        body = {"error": self.message}
        if self.parameter:
            body["parameter"] = self.parameter
        return body


class SchemaError(Exception):
    """The state store's tables cannot be brought to this release's schema; the message says why."""
