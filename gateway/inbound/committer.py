"""Group commit: deliveries that arrive while a batch is being committed queue up and go as the
next batch; the thread of the first one runs it, and each is answered once its batch committed."""
from __future__ import annotations

import threading

MAX_BATCH = 50


class _Waiter:
    __slots__ = ("work", "event", "result", "error", "lead")

    def __init__(self, work):
        self.work, self.event = work, threading.Event()
        self.result = self.error = None
        self.lead = False

    def answer(self):
        if self.error is not None:
            raise self.error
        return self.result


class GroupCommitter:
    """`submit(item)` returns what `run_batch(items)` gave for it (or raises its error); one
    batch at a time per process. `run_batch` returns, per item, a result or an exception."""

    def __init__(self, run_batch, max_batch: int = MAX_BATCH):
        self._run_batch = run_batch
        self._max = max_batch
        self._lock = threading.Lock()
        self._queue: list[_Waiter] = []
        self._busy = False
        self.hold = threading.Lock()  # held by a test: a batch forms until it is released

    def queued(self) -> int:
        with self._lock:
            return len(self._queue)

    def submit(self, work):
        waiter = _Waiter(work)
        with self._lock:
            self._queue.append(waiter)
            lead = not self._busy
            self._busy = True
        if not lead:
            waiter.event.wait()
            if not waiter.lead:
                return waiter.answer()
        return self._lead(waiter)

    def _lead(self, mine: _Waiter):
        """Run the next batch (this thread's item is its first), then hand the lead to the next one waiting."""
        batch: list[_Waiter] = []
        try:
            with self.hold:
                with self._lock:
                    batch, self._queue = self._queue[:self._max], self._queue[self._max:]
            try:
                results = self._run_batch([waiter.work for waiter in batch])
            except BaseException as exc:  # the batch as a whole failed: each of its requests is told so
                results = [exc] * len(batch)
            for waiter, result in zip(batch, results, strict=True):
                if isinstance(result, BaseException):
                    waiter.error = result
                else:
                    waiter.result = result
        finally:
            with self._lock:
                if self._queue:
                    self._queue[0].lead = True
                    self._queue[0].event.set()
                else:
                    self._busy = False
            for waiter in batch:
                if waiter is not mine:
                    waiter.event.set()
        return mine.answer()

