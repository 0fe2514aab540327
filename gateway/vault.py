"""The vault: every secret the gateway keeps is stored only as a MultiFernet token (`gw_secrets`)
under `GATEWAY_FERNET_KEYS`, newest first; `rotate_all` re-encrypts under the newest key."""
from __future__ import annotations

import time

import sqlalchemy as sa
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from .errors import ConfigError, VaultError
from .state.tables import secrets_table



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

    def get(self, conn, name: str, for_update: bool = False) -> str | None:
        """The secret `name`, decrypted; `for_update` locks its row for the rest of the transaction
        (PostgreSQL, MariaDB: a read-then-write that must not interleave with another)."""
        query = sa.select(secrets_table.c.token).where(secrets_table.c.name == name)
        if for_update and conn.dialect.name != "sqlite":
            query = query.with_for_update()
        row = conn.execute(query).first()
        return None if row is None else self.decrypt(row[0], name)

    def delete(self, conn, name: str) -> None:
        conn.execute(secrets_table.delete().where(secrets_table.c.name == name))

    def rotate_all(self, store) -> int:
        """Re-encrypt every stored secret under the newest key, in one transaction; returns how many."""
        query = sa.select(secrets_table.c.name, secrets_table.c.token)
        if store.dialect != "sqlite":
            query = query.with_for_update()  # a save committing meanwhile must wait, not be undone
        with store.immediate() as conn:
            rows = conn.execute(query).all()
            rotated = [(name, self.rotate_token(token, name)) for name, token in rows]  # all or nothing
            for name, token in rotated:
                conn.execute(
                    secrets_table.update().where(secrets_table.c.name == name).values(token=token, updated_at=time.time())
                )
        return len(rotated)


class RotatingSecret:
    """A secret the admin copies into another system (Zoho's webhooks, OnPrintShop's event sender),
    made on first use; each replaced one stays valid for its own `grace` (up to MAX_PREVIOUS), so a
    second rotation never cuts short the first one's (docs/security.md)."""

    MAX_PREVIOUS = 5

    def __init__(self, name: str, make, grace: float = 24 * 3600, clock=time.time):
        self.current_name = f"{name}.current"
        self.previous_name = f"{name}.previous"
        self.expires_setting = f"{name}.previous_expires_at"  # the one expiry of the older, single-previous format
        self.make = make
        self.grace = grace
        self.clock = clock

    def read(self, rt, create: bool = True) -> tuple[str | None, list[tuple[str, float]]]:
        """(current, [(previous, expires_at), ...] newest first, only those whose grace lasts)."""
        with rt.store.engine.connect() as conn:
            current = rt.vault.get(conn, self.current_name)
            previous = self._previous(rt, conn)
        if current is None and create:
            with rt.store.immediate() as conn:
                current = rt.vault.get(conn, self.current_name)  # another process may have made it
                if current is None:
                    current = self.make()
                    rt.vault.put(conn, self.current_name, current)
        return current, previous

    @staticmethod
    def shown(current: str | None, previous: list[tuple[str, float]]) -> dict:
        """The state as the admin page shows it: {current, previous, previous_expires_at (the
        newest replaced one still valid), previous_all: [{secret, expires_at}] newest first}."""
        newest = previous[0] if previous else (None, None)
        return {"current": current, "previous": newest[0], "previous_expires_at": newest[1],
                "previous_all": [{"secret": secret, "expires_at": expires} for secret, expires in previous]}

    def rotate(self, rt) -> str:
        """Make a new secret; the one it replaces stays valid for the grace period, as do those
        replaced before whose grace still lasts. Returns the new one."""
        import json

        fresh = self.make()
        with rt.store.immediate() as conn:
            old = rt.vault.get(conn, self.current_name, for_update=True)
            if old is not None:
                kept = [(old, self.clock() + self.grace)] + self._previous(rt, conn, for_update=True)
                rt.vault.put(conn, self.previous_name, json.dumps(
                    [{"secret": secret, "expires_at": expires} for secret, expires in kept[:self.MAX_PREVIOUS]]))
                rt.store.set_setting(self.expires_setting, None, conn=conn)
            rt.vault.put(conn, self.current_name, fresh)
        return fresh

    def revoke_previous(self, rt) -> int:
        """End every replaced secret's grace now (a leaked one stops working); returns how many ended."""
        with rt.store.immediate() as conn:
            ended = len(self._previous(rt, conn, for_update=True))
            rt.vault.delete(conn, self.previous_name)
            rt.store.set_setting(self.expires_setting, None, conn=conn)
        return ended

    def _previous(self, rt, conn, for_update: bool = False) -> list[tuple[str, float]]:
        import json

        stored = rt.vault.get(conn, self.previous_name, for_update=for_update)
        if stored is None:
            return []
        if stored.startswith("["):
            entries = [(entry["secret"], float(entry["expires_at"])) for entry in json.loads(stored)]
        else:  # written before the list: one secret, its expiry in the settings
            expires = rt.store.get_setting(self.expires_setting, conn=conn)
            entries = [] if expires is None else [(stored, float(expires))]
        now = self.clock()
        return [(secret, expires) for secret, expires in entries if expires > now]
