"""Applying changes from Zoho to the OnPrintShop database, with its errors made the port's."""
from __future__ import annotations

import logging

import sqlalchemy as sa

from ...state.engine import is_lock_conflict, rerun
from ..port import Applied, OpsBusy, OpsError, OpsRefused, OpsUnavailable, Writer
from . import together as together_module
from . import writes

log = logging.getLogger("gateway.ops")

# Every error class that can come from the database; `OpsDatabase.failure_kind` tells them apart.
DATABASE_ERRORS = (sa.exc.DBAPIError, sa.exc.DisconnectionError, sa.exc.TimeoutError)


def _run_again(exc: BaseException) -> bool:
    """A deadlock rolled the OnPrintShop transaction back: run it again. Not a lock wait (1205):
    that already waited, and the row is still held ("busy")."""
    return (isinstance(exc, sa.exc.OperationalError) and is_lock_conflict(exc)
            and getattr(exc.orig, "args", (None,))[:1] != (1205,))


class DatabaseWriter(Writer):
    """`with ops.writer() as writer: writer.apply(update, linked, links)`; one OnPrintShop
    transaction per change (or per `apply_batch`), committed before it returns."""

    def __init__(self, ops, connect_now: bool = False, write_email: bool = False):
        self.ops = ops
        self._connect_now = connect_now
        self._write_email = write_email
        self._conn = None
        self._unreachable = False
        self.down = False

    def __enter__(self):
        ops = self.ops
        self.down = ops.recently_unavailable()
        if self._connect_now and not self.down:
            try:
                self._conn = ops.engine.connect()
            except DATABASE_ERRORS as exc:
                if ops.failure_kind(exc) == "unavailable":  # else the apply connects itself and says why
                    ops.mark_unavailable()
                    log.warning("OnPrintShop database unavailable (%s)", exc.__class__.__name__)
                    self._unreachable = True
        return self

    def __exit__(self, *exc_info):
        if self._conn is not None:
            self._conn.close()
        return False

    def apply(self, update, linked, links) -> Applied:
        """Apply one change; raises OpsUnavailable, OpsBusy or OpsRefused."""
        if self._unreachable:
            raise OpsUnavailable("the OnPrintShop database did not answer the connection")

        def once():
            with self.ops.begin(self._conn) as conn:
                return writes.apply_update(self.ops, conn, update, linked, links, self._write_email)

        try:
            return rerun(once, attempts=3, when=_run_again)
        except DATABASE_ERRORS as exc:
            error = self._error(exc)
            raise error from (exc if isinstance(error, OpsRefused) else None)

    def apply_batch(self, items, links) -> list:
        """Several changes in one OnPrintShop transaction: its Deals together
        (`together.apply_deals`), the other changes each in its own SAVEPOINT, so that a change
        refused or locked rolls back alone. A deadlock runs the batch again; unavailable ends it."""
        if len(items) == 1:
            return super().apply_batch(items, links)
        if self._unreachable:
            return [OpsUnavailable("the OnPrintShop database did not answer the connection")] * len(items)
        deals = together_module.together_indices(items)
        try:
            try:
                return rerun(lambda: self._once(items, links, deals), attempts=3, when=_run_again)
            except DATABASE_ERRORS as exc:
                if len(deals) < len(items) or self.ops.failure_kind(exc) == "unavailable":
                    raise
                # Every change a Deal, refused or locked together (rolled back whole): one by one tells which.
            return rerun(lambda: self._once(items, links, []), attempts=3, when=_run_again)
        except DATABASE_ERRORS as exc:
            return [self._error(exc)] * len(items)

    def _once(self, items, links, deals: list[int]) -> list:
        """The batch's transaction: the Deals at `deals` together (behind a SAVEPOINT when there
        are other changes), then every change not settled yet behind a SAVEPOINT of its own."""
        results: list = [None] * len(items)
        with self.ops.begin(self._conn) as conn:
            if deals:
                whole = len(deals) == len(items)
                if not whole:
                    conn.exec_driver_sql("SAVEPOINT gw_together")
                try:
                    settled = together_module.apply_deals(self.ops, conn, [items[i] for i in deals], links)
                except DATABASE_ERRORS as exc:
                    if whole or _run_again(exc) or self.ops.failure_kind(exc) == "unavailable":
                        raise
                    conn.exec_driver_sql("ROLLBACK TO SAVEPOINT gw_together")
                    settled = None
                if settled is not None:
                    for i, result in zip(deals, settled, strict=True):
                        results[i] = result
            for n, (update, linked) in enumerate(items):
                if results[n] is not None:
                    continue
                # Never released (one round trip fewer): the commit ends them all.
                conn.exec_driver_sql(f"SAVEPOINT gw_change_{n}")
                try:
                    results[n] = writes.apply_update(self.ops, conn, update, linked, links, self._write_email)
                except DATABASE_ERRORS as exc:
                    kind = "again" if _run_again(exc) else self.ops.failure_kind(exc)
                    if kind in ("again", "unavailable"):
                        raise
                    conn.exec_driver_sql(f"ROLLBACK TO SAVEPOINT gw_change_{n}")
                    results[n] = self._error(exc, kind)
        return results

    def _error(self, exc, kind: str | None = None) -> OpsError:
        """The port's error for a database error (busy, unavailable: marked for a moment, refused)."""
        kind = kind or self.ops.failure_kind(exc)
        if kind == "busy":
            error = OpsBusy(f"the OnPrintShop record is locked ({exc.__class__.__name__})")
        elif kind == "unavailable":
            self.ops.mark_unavailable()
            error = OpsUnavailable(f"the OnPrintShop database is unavailable ({exc.__class__.__name__})")
        else:
            error = OpsRefused(f"the OnPrintShop database refused the change: {str(getattr(exc, 'orig', exc))[:300]}")
        return error
