"""Read-then-write of shared state while another process commits the same rows: the connection's
generation guard, and `rotate-keys`. Each test holds one transaction open across the other's
read, the window a parallel save or refresh really has."""
from __future__ import annotations

import threading

from cryptography.fernet import Fernet

from gateway.state import Store
from gateway.state.migrate import init_db
from gateway.vault import Vault
from gateway.zoho import connection
from tests.conftest import LockWaiters, wait_until


class Holder(threading.Thread):
    """Runs `write(conn)` in a transaction and keeps it open until another transaction is queued
    behind its locks (the other side's read really fell into the window), then commits."""

    def __init__(self, store, write):
        super().__init__()
        self.store, self.write = store, write
        self.started = threading.Event()
        self.error: BaseException | None = None
        self.start()
        assert self.started.wait(10)

    def run(self):
        try:
            with self.store.immediate() as conn:
                with LockWaiters(conn) as waiters:
                    self.write(conn)
                    self.started.set()
                    wait_until(waiters.count, timeout=30, message="the other side to wait for this transaction's lock")
        except BaseException as exc:  # re-raised by finish(), in the test's thread
            self.error = exc
        finally:
            self.started.set()

    def finish(self) -> None:
        self.join(30)
        assert not self.is_alive()
        if self.error is not None:
            raise self.error


def test_a_refresh_of_a_replaced_connection_changes_nothing(state_db_url):
    """A token refresh of connection A finishes while the admin's save of connection B commits:
    B stays whole (its account, its generation), the refresh reports it was replaced."""
    store = Store(state_db_url)
    init_db(store)
    store.set_setting(connection.SETTING, {"generation": "A", "account_id": "111", "access_expires_at": 1.0})
    saving = Holder(store, lambda conn: store.set_setting(
        connection.SETTING, {"generation": "B", "account_id": "222", "access_expires_at": 2.0}, conn=conn))
    try:
        applied = connection.update_fields(store, "A", {"access_expires_at": 99.0})
    finally:
        saving.finish()
    assert applied is False
    assert connection.load(store) == {"generation": "B", "account_id": "222", "access_expires_at": 2.0}
    store.dispose()


def test_rotate_keys_does_not_undo_a_secret_saved_meanwhile(state_db_url):
    old_key, new_key = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    store = Store(state_db_url)
    init_db(store)
    with store.begin() as conn:
        Vault([old_key]).put(conn, "zoho.refresh_token", "R1-about-to-be-replaced")
    saving = Holder(store, lambda conn: Vault([old_key]).put(conn, "zoho.refresh_token", "R2-new"))
    try:
        rotated = Vault([new_key, old_key]).rotate_all(store)
    finally:
        saving.finish()
    assert rotated == 1
    with store.engine.connect() as conn:
        assert Vault([new_key, old_key]).get(conn, "zoho.refresh_token") == "R2-new"
    store.dispose()
