"""The OnPrintShop API backend: a hosted store through its GraphQL API (`OPS_BACKEND=api`)."""
from .backend import OpsApi

__all__ = ["OpsApi"]
