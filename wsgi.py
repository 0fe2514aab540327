"""The WSGI entry point (`gunicorn wsgi:app`, `flask --app wsgi …`).

A missing or wrong setting stops start-up with one clear line, never a traceback.
"""
import sys

from gateway import create_app
from gateway.errors import ConfigError

try:
    app = create_app()
except ConfigError as exc:
    sys.stderr.write(f"gateway: configuration error: {exc}\n")
    sys.exit(4)  # gunicorn's "app failed to load": the arbiter stops instead of respawning
