"""Apps wired to the fake Zoho, for the Zoho connection and token tests."""
import pytest


@pytest.fixture
def zoho_app(make_app, zoho_settings, state_db_url):
    """An app on each state store (SQLite; MariaDB and PostgreSQL when their URLs are set)."""
    return make_app(DATABASE_URL=state_db_url, **zoho_settings)


@pytest.fixture
def sqlite_zoho_app(make_app, zoho_settings):
    """For what does not depend on the state store: SQLite only, to keep the suite fast."""
    return make_app(**zoho_settings)
