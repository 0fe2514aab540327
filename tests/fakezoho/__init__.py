"""A fake Zoho (accounts server and CRM API) that behaves as Zoho's documentation says (docs/zoho.md)."""
from .server import FakeZoho

__all__ = ["FakeZoho"]
