"""Background work that one process of the deployment does at a time, under a named lease."""
from __future__ import annotations

import logging

import sqlalchemy as sa

from .store import new_holder_id


def leased_loop(store, stop, lease: str, work, *, every: float, lease_seconds: float, wanted=None,
                keep_lease: bool = False, log: logging.Logger, what: str) -> None:
    """Until `stop`: every `every` seconds (or `every()`), if `wanted()` and the lease is ours, run
    `work()` (a number it returns is the next wait). The lease goes back after each round, or with
    `keep_lease` is held until the loop stops; a failing round is logged and the loop goes on."""
    holder = new_holder_id()
    try:
        while not stop.is_set():
            wait = every() if callable(every) else every
            try:
                if (wanted is None or wanted()) and store.try_lease(lease, holder, lease_seconds):
                    try:
                        result = work()
                    finally:
                        if not keep_lease:
                            store.release_lease(lease, holder)
                    if isinstance(result, (int, float)) and not isinstance(result, bool):
                        wait = result
            except Exception:  # the state store or a remote side gone for a moment: next round
                log.exception("%s failed; trying again in %.0f s", what, wait)
            if wait:
                stop.wait(wait)
    finally:
        if keep_lease:
            try:
                store.release_lease(lease, holder)
            except sa.exc.SQLAlchemyError:
                pass
