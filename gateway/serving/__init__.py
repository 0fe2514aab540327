"""Serving the app under gunicorn: a worker that reads whole requests before a thread runs them."""
