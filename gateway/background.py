"""Background work: the threads a web process (GATEWAY_RUN_WORKER=1) or `flask worker` runs.

Each entry of TASKS names a function `run(rt, stop)` that loops until the `threading.Event`
`stop` is set (use `stop.wait(seconds)` to sleep). Started from gunicorn's `post_worker_init`
(never in the master, never in CLI commands or test apps) and stopped in `worker_exit`.
"""
from __future__ import annotations

import importlib
import logging
import threading

log = logging.getLogger("gateway.background")

TASKS = (
    "gateway.outbound.worker:run",       # the push queue worker
    "gateway.outbound.poller:run",       # the OnPrintShop change poller
    "gateway.inbound.inbox:run_reapplier",  # applies inbox rows accepted while OnPrintShop was away
    "gateway.inbound.notify:run_renewal",   # Notification API channel renewal
    "gateway.inbound.catchup:run",       # periodic catch-up from Zoho
    "gateway.maintenance:run",           # retention purge
)


class BackgroundRunner:
    def __init__(self, app, tasks=TASKS):
        self.app = app
        self.tasks = tasks
        self.stop_event = threading.Event()
        self.threads: list[threading.Thread] = []

    def start(self) -> None:
        for spec in self.tasks:
            module_name, func_name = spec.split(":")
            try:
                func = getattr(importlib.import_module(module_name), func_name)
            except (ImportError, AttributeError):
                log.error("background task %s is not available: that work will not run in this process", spec)
                continue
            thread = threading.Thread(target=self._run, args=(spec, func), name=f"gw-{func_name}", daemon=True)
            thread.start()
            self.threads.append(thread)

    def _run(self, spec, func) -> None:
        rt = self.app.extensions["gateway"]
        while not self.stop_event.is_set():
            try:
                with self.app.app_context():
                    func(rt, self.stop_event)
                return
            except Exception:  # a crashed loop restarts after a pause instead of dying silently
                log.exception("background task %s failed; restarting in 5 s", spec)
                self.stop_event.wait(5)

    def stop(self, timeout: float = 15.0) -> None:
        """Stop every task within `timeout` in all (inside gunicorn's graceful_timeout), so each
        has the time to hand back its leases."""
        import time

        self.stop_event.set()
        deadline = time.monotonic() + timeout
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))
