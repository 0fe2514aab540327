"""A fake Zoho (accounts server and CRM API) that behaves as ../shared/ZOHO_NOTES.md says."""
from .server import FakeZoho

__all__ = ["FakeZoho"]
