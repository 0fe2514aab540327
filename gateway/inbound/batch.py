"""One batch of group commit: deliveries queued together are decided in one state-store
transaction (their records locked in key order), applied in one OnPrintShop transaction, and
recorded with multi-row writes (docs/inbound.md, "Group commit")."""
from __future__ import annotations

import logging
import time

import sqlalchemy as sa

from ..ops import OpsBusy, OpsRefused, OpsUnavailable
from ..state import dialect, direct
from ..state.tables import applied_table, inbox_table
from ..sync import links, loopguard
from . import decision, markers
from .decision import Outcome

log = logging.getLogger("gateway.inbound")

_INSERT_INBOX = inbox_table.insert()
_INSERT_INBOX_RETURNING = inbox_table.insert().returning(inbox_table.c.id, sort_by_parameter_order=True)
_UPDATE_MARKER = applied_table.update().where(applied_table.c.module == sa.bindparam("where_module"),
                                              applied_table.c.zoho_id == sa.bindparam("where_zoho_id"))


class Delivery:
    """One queued delivery; once its batch has committed, its `outcome`."""

    __slots__ = ("module", "update", "source", "row", "outcome", "key")

    def __init__(self, module: str, update, source: str):
        self.module, self.update, self.source = module, update, source
        self.key = (module, update.zoho_id)
        self.row: dict = {}
        self.outcome: Outcome | None = None


class _Links:
    """The gateway's links as the batch leaves them: its own new links first, then the state store's."""

    def __init__(self, conn):
        self.conn = conn
        self.added: dict[tuple, str] = {}
        self.moved: set[tuple] = set()
        self.read: dict[tuple, str | None] = {}

    def zoho_id_for(self, module: str, ops_id: int) -> str | None:
        key = (module, int(ops_id))
        if key in self.added:
            return self.added[key]
        if key in self.moved:
            return None
        if key in self.read:
            return self.read[key]
        return links.zoho_id_for(self.conn, module, ops_id)

    def read_ahead(self, keys: set[tuple]) -> None:
        """Read the links of these (module, ops_id) keys in one statement (a writer asks for them
        one by one), unless one alone is asked for."""
        keys -= self.read.keys()
        if len(keys) > 1:
            self.read.update(links.zoho_ids_for(self.conn, keys))


def run(rt, deliveries: list[Delivery], careful: bool = False) -> None:
    """Decide, apply and record the batch, setting each delivery's outcome; committed on return.
    `careful`: a delivery run alone after its batch failed (links saved one by one, as before)."""
    now = time.time()
    store = rt.store
    for delivery in deliveries:
        delivery.row = decision.new_row(delivery.module, delivery.update, delivery.source, now)
        delivery.outcome = None
    with rt.ops.writer(connect_now=store.dialect == dialect.SQLITE, write_email=rt.config["GATEWAY_WRITE_BACK_EMAIL"],
                      changes=len(deliveries)) as writer, decision.decision_txn(store) as sconn:
        batch = _Batch(sconn, store.dialect, writer, deliveries)
        batch.decide()
        batch.record(careful)


class _Batch:
    def __init__(self, sconn, dialect_name: str, writer, deliveries: list[Delivery]):
        self.conn, self.writer, self.deliveries = sconn, writer, deliveries
        self.records = markers.lock(sconn, dialect_name, {d.key for d in deliveries})
        self.links = _Links(sconn)
        self.away = writer.down
        self.guard: list[tuple] = []
        self.new_links: list[tuple] = []  # (module, ops_id, zoho_id, zoho_id linked to another ops_id before)

    # -- deciding, in the order the deliveries came; one record's next one after its last is applied -----
    def decide(self) -> None:
        todo = self.deliveries
        while todo:
            applying: dict[tuple, Delivery] = {}
            later = []
            for delivery in todo:
                if delivery.key in applying:
                    later.append(delivery)
                elif not self._decided_without_applying(delivery):
                    applying[delivery.key] = delivery
            if applying:
                self._apply(list(applying.values()))
            todo = later

    def _decided_without_applying(self, d: Delivery) -> bool:
        record, update = self.records[d.key], d.update
        if self.away:
            self._pending(d, decision.LATER)
        elif record.earliest_pending is not None and record.earliest_pending <= update.modified_time:
            self._pending(d, decision.WAITING)
        elif record.modified_time is not None and update.modified_time < record.modified_time:
            self._done(d, "stale", decision.STALE, record.ops_id)
        elif record.modified_time is not None and update.modified_time == record.modified_time and (
                d.row["fingerprint"] == record.fingerprint or (update.modified_time, d.row["fingerprint"]) in record.seen
                or decision.seen_before(self.conn, d.module, update.zoho_id, update.modified_time, d.row["fingerprint"])):
            self._done(d, "duplicate", "already applied", record.ops_id)
        else:
            return False
        return True

    def _apply(self, applying: list[Delivery]) -> None:
        items = [(d.update, self.records[d.key].linked) for d in applying]
        self.links.read_ahead({(update.module, update.ops_id) for update, linked in items
                               if linked is None and update.ops_id is not None})
        try:
            results = self.writer.apply_batch(items, self.links)
        except sa.exc.DBAPIError:
            raise  # the state store's own: the transaction may be gone, so nothing may be promised
        except Exception as exc:  # not an OpsError: which change met it is not known, so each is applied alone
            results = [self._apply_alone(item) for item in items] if len(items) > 1 else [exc]
        for d, result in zip(applying, results, strict=True):
            self._settle(d, result)

    def _apply_alone(self, item):
        try:
            return self.writer.apply_batch([item], self.links)[0]
        except sa.exc.DBAPIError:
            raise
        except Exception as exc:  # a bug, ours or a backend's: this delivery alone is retried and counted
            return exc

    def _settle(self, d: Delivery, result) -> None:
        which = f"the new delivery for {d.module} {d.update.zoho_id}"
        if isinstance(result, (OpsUnavailable, OpsBusy)):
            log.warning("%s; %s stays pending", result, which)
            if isinstance(result, OpsUnavailable):
                self.away = True
                self._pending(d, decision.LATER)
            else:
                self._pending(d, decision.BUSY, next_attempt_at=time.time() + decision.BUSY_RETRY_SECONDS)
            return
        if isinstance(result, Exception):  # refused by OnPrintShop, or a failure in applying: retried, counted
            reason = decision.attempt_reason(result)
            log.warning("%s could not be applied now; it stays pending: %s", which, reason,
                        exc_info=None if isinstance(result, OpsRefused) else result)
            self._pending(d, "stored; it will be applied later", next_attempt_at=time.time() + decision.retry_delay(1),
                          attempts=1, reason=f"{reason}; retried later"[:500])
            return
        record = self.records[d.key]
        if result.written:
            self.guard.append(result.written)  # recorded with the outcome, after OnPrintShop's commit
        if result.status in ("applied", "stale") and result.found_by in ("ops_id", "email"):
            self._link(d, record, result.ops_id)
        if result.status == "applied":
            record.modified_time, record.fingerprint, record.ops_id = d.update.modified_time, d.row["fingerprint"], result.ops_id
            record.dirty = True
        message = result.message + "".join(f"; {note}" for note in result.notes)
        self._done(d, result.status, message, result.ops_id, result.parameter)

    def _link(self, d: Delivery, record, ops_id: int) -> None:
        if record.linked is not None and int(record.linked) != ops_id:
            self.links.moved.add((d.module, int(record.linked)))
        self.new_links.append((d.module, ops_id, d.update.zoho_id, record.linked is not None))
        self.links.added[(d.module, ops_id)] = d.update.zoho_id
        record.linked = ops_id

    def _pending(self, d: Delivery, message: str, **values) -> None:
        d.row.update(values)
        record = self.records[d.key]
        if record.earliest_pending is None or d.update.modified_time < record.earliest_pending:
            record.earliest_pending = d.update.modified_time  # the record's later deliveries wait behind it
        d.outcome = Outcome("accepted", message)

    def _done(self, d: Delivery, status: str, reason: str, ops_id=None, parameter=None) -> None:
        d.row.update(decision.done_values(status, reason, ops_id, parameter))
        if status in ("applied", "duplicate"):
            self.records[d.key].seen.add((d.update.modified_time, d.row["fingerprint"]))
        d.outcome = Outcome(status, reason, ops_id=ops_id, parameter=parameter)

    # -- recording: the inbox rows, the loop guard, the links and the markers, a statement each ----------
    def record(self, careful: bool) -> None:
        conn, deliveries = self.conn, self.deliveries
        if len(deliveries) == 1:
            deliveries[0].outcome.inbox_id = direct.insert_id(conn, _INSERT_INBOX, deliveries[0].row)
        else:
            ids = conn.execute(_INSERT_INBOX_RETURNING, [d.row for d in deliveries]).scalars().all()
            for d, inbox_id in zip(deliveries, ids, strict=True):
                d.outcome.inbox_id = inbox_id
        if len(self.guard) == 1:
            loopguard.record(conn, *self.guard[0])
        elif self.guard:
            loopguard.record_many(conn, self.guard)
        if careful:
            for module, ops_id, zoho_id, _moved in self.new_links:
                links.save(conn, module, ops_id, zoho_id)
        elif self.new_links:
            links.insert_found(conn, self.new_links)
        changed = [(key, record) for key, record in self.records.items() if record.dirty]
        if len(changed) == 1:
            (module, zoho_id), record = changed[0]
            direct.run(conn, _UPDATE_MARKER, {"where_module": module, "where_zoho_id": zoho_id, **record.values()})
        elif changed:
            markers.save(conn, changed)
