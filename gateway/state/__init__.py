"""The gateway's own state store: its engine, its tables, its migrations."""
from .store import Store, new_holder_id

__all__ = ["Store", "new_holder_id"]
