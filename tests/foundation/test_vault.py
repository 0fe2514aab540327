"""The vault: secrets stored only as Fernet tokens; rotate-keys re-encrypts under the newest key."""
from cryptography.fernet import Fernet



def test_secret_is_not_in_the_database_bytes_and_keys_rotate(tmp_path, make_app):
    old_key, new_key = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    db = tmp_path / "state.db"
    app = make_app(GATEWAY_FERNET_KEYS=old_key, DATABASE_URL=f"sqlite:///{db}")
    rt = app.extensions["gateway"]
    with rt.store.begin() as conn:
        rt.vault.put(conn, "zoho.client_secret", "SUPER-SECRET-VALUE-1234")
    rt.store.dispose()
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("state.db*"))
    assert b"SUPER-SECRET-VALUE-1234" not in raw

    rotated = make_app(GATEWAY_FERNET_KEYS=f"{new_key},{old_key}", DATABASE_URL=f"sqlite:///{db}")
    result = rotated.test_cli_runner().invoke(args=["rotate-keys"])
    assert result.exit_code == 0, result.output
    assert "re-encrypted 1 secrets" in result.output

    only_new = make_app(GATEWAY_FERNET_KEYS=new_key, DATABASE_URL=f"sqlite:///{db}")
    rt = only_new.extensions["gateway"]
    with rt.store.begin() as conn:
        assert rt.vault.get(conn, "zoho.client_secret") == "SUPER-SECRET-VALUE-1234"


def test_wrong_key_gives_a_clear_error_not_a_traceback(tmp_path, make_app):
    db = tmp_path / "state.db"
    app = make_app(GATEWAY_FERNET_KEYS=Fernet.generate_key().decode(), DATABASE_URL=f"sqlite:///{db}")
    rt = app.extensions["gateway"]
    with rt.store.begin() as conn:
        rt.vault.put(conn, "events.secret", "whsec_abc")
    stranger = make_app(GATEWAY_FERNET_KEYS=Fernet.generate_key().decode(), DATABASE_URL=f"sqlite:///{db}")
    result = stranger.test_cli_runner().invoke(args=["rotate-keys"])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert "cannot re-encrypt events.secret: none of the keys in GATEWAY_FERNET_KEYS fits" in result.output


def test_bad_key_is_named(make_app):
    import pytest

    from gateway.errors import ConfigError

    with pytest.raises(ConfigError, match="key 2 is not a Fernet key"):
        make_app(GATEWAY_FERNET_KEYS=Fernet.generate_key().decode() + ",not-a-key")
