"""gunicorn settings, read from the environment as Heroku sets it (docs/settings.md); with
GATEWAY_RUN_WORKER=1 each worker runs the background work, from post_worker_init to worker_exit."""
import os

bind = os.environ.get("GUNICORN_BIND") or f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '8000')}"
# Development (`make run`) serves the Zoho simulator, which keeps its records in the process's
# memory: one process, with threads enough for the gateway to call it and be called back.
development = os.environ.get("GATEWAY_ENV", "").strip().lower() == "development"
workers = int(os.environ.get("WEB_CONCURRENCY", "1" if development else "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "8"))
# gthread, except that each request's head and body are read in the worker's event loop (with
# deadlines) before a thread runs it: slow clients cannot take the threads (docs/slow-clients.md).
worker_class = "gateway.serving.worker.BufferingWorker"
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = 20
keepalive = 5
preload_app = False  # each worker opens its own database connections and threads
accesslog = None  # the app logs one line per request itself (with a request id, tokens masked)
errorlog = "-"
# Behind a proxy (GATEWAY_PROXY_HOPS > 0) the app's ProxyFix decides what to trust; a bad value
# is reported by the app's own settings check (on_starting) in one line.
forwarded_allow_ips = "*" if os.environ.get("GATEWAY_PROXY_HOPS", "0").strip() not in ("", "0") else "127.0.0.1"


def post_worker_init(worker):
    from gateway.background import BackgroundRunner

    flask_app = worker.wsgi
    if not flask_app.config.get("GATEWAY_RUN_WORKER"):
        return
    runner = BackgroundRunner(flask_app)
    runner.start()
    worker._gateway_runner = runner


def worker_exit(server, worker):
    runner = getattr(worker, "_gateway_runner", None)
    if runner is not None:
        runner.stop()


def on_starting(server):
    # Check the settings once in the master, so a missing one stops start-up with one line
    # instead of every worker failing to boot.
    import sys

    from gateway import default_instance_path, settings
    from gateway.errors import ConfigError

    try:
        settings.load(default_instance_path())
    except ConfigError as exc:
        sys.stderr.write(f"gateway: configuration error: {exc}\n")
        sys.stderr.flush()
        raise SystemExit(4) from None
