"""A Zoho CRM simulator (accounts server, records API, Notification API, workflow webhooks) for
development (`make run`) and the test suite's fake Zoho; never reachable in production (docs/simulator.md)."""
from .core import ZohoSimulator
from .messages import Request, Response

__all__ = ["Request", "Response", "ZohoSimulator"]
