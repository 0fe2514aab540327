"""A fake OnPrintShop API (token endpoint and GraphQL) that behaves as OnPrintShop's API is known to."""
from .server import FakeOps

__all__ = ["FakeOps"]
