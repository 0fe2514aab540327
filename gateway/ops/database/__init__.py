"""The OnPrintShop database backend: a self-hosted store's MySQL (and the embedded SQLite demo)."""
from .backend import OpsDatabase
from .writer import DATABASE_ERRORS

__all__ = ["DATABASE_ERRORS", "OpsDatabase"]
