"""Background work: the threads a gunicorn worker (GATEWAY_RUN_WORKER=1, started in `post_worker_init`,
stopped in `worker_exit`) or `flask worker` runs (docs/operations.md)."""
from __future__ import annotations

import logging
import threading
import time

from . import maintenance
from .inbound import catchup, notify, reapply
from .outbound import poller, worker

log = logging.getLogger("gateway.background")

# Each `run(rt, stop)` loops until the `threading.Event` `stop` is set.
TASKS = (
    ("push queue worker", worker.run),
    ("change poller", poller.run),
    ("inbox re-applier", reapply.run),
    ("Notification API upkeep", notify.run_renewal),
    ("catch-up from Zoho", catchup.run),
    ("retention purge", maintenance.run),
)


class BackgroundRunner:
    def __init__(self, app, tasks=TASKS):
        self.app = app
        self.tasks = tasks
        self.stop_event = threading.Event()
        self.threads: list[threading.Thread] = []

    def start(self) -> None:
        for name, func in self.tasks:
            thread = threading.Thread(target=self._run, args=(name, func), name=f"gw-{func.__module__}", daemon=True)
            thread.start()
            self.threads.append(thread)

    def _run(self, name, func) -> None:
        rt = self.app.extensions["gateway"]
        while not self.stop_event.is_set():
            try:
                with self.app.app_context():
                    func(rt, self.stop_event)
                return
            except Exception:  # a crashed loop restarts after a pause instead of dying silently
                log.exception("background task %s failed; restarting in 5 s", name)
                self.stop_event.wait(5)

    def stop(self, timeout: float = 15.0) -> None:
        """Stop every task within `timeout` in all (inside gunicorn's graceful_timeout)."""
        self.stop_event.set()
        deadline = time.monotonic() + timeout
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))
