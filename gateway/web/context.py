"""The runtime of the app handling the current request or command."""
from __future__ import annotations

from flask import current_app

from ..runtime import Runtime


def runtime() -> Runtime:
    return current_app.extensions["gateway"]
