"""The vault: every secret the gateway keeps is stored only as a MultiFernet token.

Keys come from `GATEWAY_FERNET_KEYS`, newest first. `put`/`get` read and write the
`gw_secrets` table; `rotate_all` re-encrypts every row under the newest key.
"""
from __future__ import annotations

import time

import sqlalchemy as sa
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from .errors import ConfigError, VaultError
from .store import metadata

secrets_table = sa.Table(
    "gw_secrets",
    metadata,
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("token", sa.Text, nullable=False),
    sa.Column("updated_at", sa.Double, nullable=False),
)


def last4(value: str | None) -> str:
    """What the admin may see of a credential: its last four characters."""
    if not value:
        return ""
    return "…" + value[-4:] if len(value) > 4 else "…"


class Vault:
    def __init__(self, keys: list[str]):
        if not keys:
            raise ConfigError("GATEWAY_FERNET_KEYS is empty: give at least one Fernet key")
        fernets = []
        for position, key in enumerate(keys, start=1):
            try:
                fernets.append(Fernet(key))
            except (ValueError, TypeError):
                raise ConfigError(
                    f"GATEWAY_FERNET_KEYS: key {position} is not a Fernet key (32 url-safe base64-encoded bytes); "
                    "make one with: python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"
                ) from None
        self._fernet = MultiFernet(fernets)

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode("utf-8")).decode("ascii")

    def decrypt(self, token: str, name: str = "a secret") -> str:
        try:
            return self._fernet.decrypt(token.encode("ascii")).decode("utf-8")
        except InvalidToken:
            raise VaultError(
                f"cannot decrypt {name}: none of the keys in GATEWAY_FERNET_KEYS fits; "
                "keep the old key in the list (after the new one) until `rotate-keys` has run"
            ) from None

    def rotate_token(self, token: str, name: str = "a secret") -> str:
        try:
            return self._fernet.rotate(token.encode("ascii")).decode("ascii")
        except InvalidToken:
            raise VaultError(f"cannot re-encrypt {name}: none of the keys in GATEWAY_FERNET_KEYS fits") from None

    # -- the secrets table ------------------------------------------------------------------
    def put(self, conn, name: str, plaintext: str) -> None:
        token = self.encrypt(plaintext)
        now = time.time()
        updated = conn.execute(
            secrets_table.update().where(secrets_table.c.name == name).values(token=token, updated_at=now)
        ).rowcount
        if not updated:
            conn.execute(secrets_table.insert().values(name=name, token=token, updated_at=now))

    def get(self, conn, name: str) -> str | None:
        row = conn.execute(sa.select(secrets_table.c.token).where(secrets_table.c.name == name)).first()
        return None if row is None else self.decrypt(row[0], name)

    def delete(self, conn, name: str) -> None:
        conn.execute(secrets_table.delete().where(secrets_table.c.name == name))

    def rotate_all(self, store) -> int:
        """Re-encrypt every stored secret under the newest key, in one transaction; returns how many."""
        with store.immediate() as conn:
            rows = conn.execute(sa.select(secrets_table.c.name, secrets_table.c.token)).all()
            rotated = [(name, self.rotate_token(token, name)) for name, token in rows]  # all or nothing
            for name, token in rotated:
                conn.execute(
                    secrets_table.update().where(secrets_table.c.name == name).values(token=token, updated_at=time.time())
                )
        return len(rotated)
