"""Read-then-write of shared state while another process commits the same rows: the connection's
generation guard, and `rotate-keys`. Each test holds one transaction open across the other's
read, the window a parallel save or refresh really has."""
from __future__ import annotations

import threading
import time

from cryptography.fernet import Fernet

from gateway.state import Store
from gateway.state.migrate import init_db
from gateway.vault import Vault
from gateway.zoho import connection


def _hold_while(store, write, started: threading.Event, seconds: float = 0.6) -> threading.Thread:
    """Run `write(conn)` in a transaction kept open `seconds` after `started` is set."""
    def run():
        with store.immediate() as conn:
            write(conn)
            started.set()
            time.sleep(seconds)

    thread = threading.Thread(target=run)
    thread.start()
    assert started.wait(10)
    return thread


def test_a_refresh_of_a_replaced_connection_changes_nothing(state_db_url):
    """A token refresh of connection A finishes while the admin's save of connection B commits:
    B stays whole (its account, its generation), the refresh reports it was replaced."""
    store = Store(state_db_url)
    init_db(store)
    store.set_setting(connection.SETTING, {"generation": "A", "account_id": "111", "access_expires_at": 1.0})
    saving = _hold_while(store, lambda conn: store.set_setting(
        connection.SETTING, {"generation": "B", "account_id": "222", "access_expires_at": 2.0}, conn=conn), threading.Event())
    try:
        applied = connection.update_fields(store, "A", {"access_expires_at": 99.0})
    finally:
        saving.join(10)
    assert applied is False
    assert connection.load(store) == {"generation": "B", "account_id": "222", "access_expires_at": 2.0}
    store.dispose()


def test_rotate_keys_does_not_undo_a_secret_saved_meanwhile(state_db_url):
    old_key, new_key = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    store = Store(state_db_url)
    init_db(store)
    with store.begin() as conn:
        Vault([old_key]).put(conn, "zoho.refresh_token", "R1-about-to-be-replaced")
    saving = _hold_while(store, lambda conn: Vault([old_key]).put(conn, "zoho.refresh_token", "R2-new"), threading.Event())
    try:
        rotated = Vault([new_key, old_key]).rotate_all(store)
    finally:
        saving.join(10)
    assert rotated == 1
    with store.engine.connect() as conn:
        assert Vault([new_key, old_key]).get(conn, "zoho.refresh_token") == "R2-new"
    store.dispose()
