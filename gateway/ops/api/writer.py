"""Writing changes from Zoho through OnPrintShop's API: a Deal's stage, a Contact's fields.

Each change reads the record first and writes only what differs (mutations are not idempotent)
(docs/ops-api.md, "Changes from Zoho")."""
from __future__ import annotations

import math

import sqlalchemy as sa

from ...state.limiter import NoPermit
from ...state.tables import ops_records_table
from ...sync import loopguard
from .. import policy
from ..port import Applied, OpsError, OpsRefused, OpsUnavailable, Writer
from . import mirror, records
from .client import Permits

RESERVED = 4          # calls one change may need: read, the mutation, a read back, one spare (per change of a batch)
AMPLE = 16            # for a change that needed more (tried again alone): the longest path takes 7
RESERVE_WAIT = 2.0    # a delivery waits this long for them; else it is stored (202) and applied later
PAYMENT_NOT_APPLIED = ("payment_status was not applied: OnPrintShop's API cannot set a payment status "
                       "(change it in OnPrintShop)")


class ApiWriter(Writer):
    """`with backend.writer() as writer: writer.apply(update, linked, links)`."""

    def __init__(self, backend, write_email: bool = False, changes: int = 1, ample: bool = False):
        self.backend = backend
        self.write_email = write_email
        # The calls of every change of a batch, but never more than a quarter of the rate limit; a lone
        # change that needed more may take up to half of it.
        if ample:
            self.reserve = max(RESERVED, min(AMPLE, backend.calls // 2))
        else:
            self.reserve = max(RESERVED, min(RESERVED * changes, backend.calls // 4))
        self.permits: Permits | None = None
        self.down = False
        self.why = ""

    def __enter__(self):
        api = self.backend.api
        try:
            creds = api.credentials()
            token = api.tokens.get(creds)
            if api.rejected_token and api.rejected_token == token:
                api.rejected_token = None
                api.tokens.rejected(creds, token)
            self.permits = Permits(self.backend.limiter, taken=self.backend.limiter.take(self.reserve, RESERVE_WAIT))
        except (OpsError, NoPermit) as exc:
            self.down, self.why = True, str(exc)
        return self

    def __exit__(self, *exc_info):
        if self.permits is not None:
            self.permits.settle()
        return False

    def apply(self, update, linked, links) -> Applied:
        """Apply one change; raises OpsUnavailable (try later), OpsRefused (OnPrintShop said no)."""
        if self.down or self.permits is None:
            raise OpsUnavailable(self.why or "OnPrintShop's API cannot take changes now")
        if update.module == "Contacts":
            return self._contact(update, linked, links)
        return self._deal(update, linked, links)

    # -- finding the record ---------------------------------------------------------------------
    def _candidates(self, update, linked, links):
        """(ops_id, found_by) to try, or the conflict when the ops_id sent is linked to another record."""
        if linked is not None:
            yield int(linked), "link"
        if update.ops_id is not None and update.ops_id != linked:
            conflict = policy.linked_elsewhere(update, links, "customers" if update.module == "Contacts" else "orders")
            if conflict is not None:
                yield conflict, None
                return
            yield update.ops_id, "ops_id"

    def _version(self, conn, kind: str, ops_id: int):
        return conn.execute(sa.select(ops_records_table.c.changed_at).where(
            ops_records_table.c.kind == kind, ops_records_table.c.ops_id == ops_id)).scalar()

    # -- deals → orders -----------------------------------------------------------------------------
    def _deal(self, update, linked, links) -> Applied:
        backend, conn = self.backend, links.conn
        row, found_by = None, None
        for candidate, how in self._candidates(update, linked, links):
            if isinstance(candidate, Applied):
                return candidate
            row = backend.fetch_order(candidate, self.permits)
            if row is not None:
                found_by = how
                break
        if row is None:
            return policy.not_found(update)
        ops_id = int(row["orders_id"])
        copy = mirror.read(backend.store, "orders", [ops_id]).get(ops_id)
        before = mirror.data_of(copy) if copy else None  # the order as the gateway last saw it
        backend.observe_orders([row], report_new=False, conn=conn)
        notes = [PAYMENT_NOT_APPLIED] if "payment_status" in update.fields else []
        title = None
        if "stage" in update.fields:
            statuses = backend.statuses(permits=self.permits)  # inside the caller's transaction: its own calls
            wanted = update.fields["stage"].casefold()
            if wanted not in statuses:  # a status added in OnPrintShop since the cache was filled
                statuses = backend.statuses(refresh=True, permits=self.permits)
            if wanted not in statuses:
                return Applied("invalid", f"stage {update.fields['stage']!r} is not an OnPrintShop order status "
                               "(nor an alias in the mapping)", ops_id=ops_id, found_by=found_by, parameter="stage")
            title = statuses[wanted][1]
        modified = records.parse_time(row.get("order_last_modified_date"))
        changed_after = (modified is not None and not loopguard.written_by_gateway(conn, loopguard.ORDER_WRITES, ops_id, modified)
                         and backend.epoch_from_local(modified) > math.floor(update.modified_time))
        if title is None or str(row.get("order_status") or "").casefold() == title.casefold():
            # Nothing to write. If only the status moved, to Zoho's, since the gateway last looked, it is
            # most likely this change's own earlier write (its answer lost): that version is not pushed back.
            ours = title is not None and before is not None and _only_status_moved(before, row, title)
            written = ("orders", ops_id, self._version(conn, "orders", ops_id)) if ours else None
            if ours and modified is not None:
                loopguard.record(conn, loopguard.ORDER_WRITES, ops_id, modified)
            return Applied("applied", "no change: OnPrintShop already has these values" if title else "nothing to write",
                           ops_id=ops_id, found_by=found_by, written=written, notes=notes)
        if changed_after:
            return Applied("stale", f"the record changed in OnPrintShop at {modified:%Y-%m-%d %H:%M:%S}, after this Zoho change",
                           ops_id=ops_id, found_by=found_by, notes=notes)
        self.permits.ensure(2)  # the write and its read back: without the read back, our own write is pushed to Zoho
        data, _ = backend.api.execute(records.UPDATE_ORDER_STATUS, {"orders_id": ops_id, "input": {
            "order_status": title, "comment": f"Zoho CRM: Deal {update.zoho_id} moved to stage {title}",
            "notify": 1 if backend.notify_customer else 0}}, self.permits)
        _check(data.get("updateOrderStatus"), f"order {ops_id}")
        return Applied("applied", "applied: " + ", ".join(sorted(update.fields)), ops_id=ops_id, found_by=found_by,
                       written=self._read_back(update, row, title, conn), notes=notes)

    def _read_back(self, update, before: dict, title: str, conn):
        """The version of the order that holds our write, so the poller does not push it back; None
        when it cannot be read now or holds other changes too (then it is pushed, which is right)."""
        ops_id = int(before["orders_id"])
        try:
            after = self.backend.fetch_order(ops_id, self.permits)
        except OpsError:
            return None
        if after is None:
            return None
        self.backend.observe_orders([after], report_new=False, conn=conn)
        if not _only_status_moved(records.order_data(before), after, title):
            return None
        # OnPrintShop stamps the write with its own time, after the Zoho change it carried: kept, so
        # that this version of the order does not make Zoho's next change stale.
        written_at = records.parse_time(after.get("order_last_modified_date"))
        if written_at is not None:
            loopguard.record(conn, loopguard.ORDER_WRITES, ops_id, written_at)
        return "orders", ops_id, self._version(conn, "orders", ops_id)

    # -- contacts → customers -----------------------------------------------------------------------
    def _contact(self, update, linked, links) -> Applied:
        backend, conn = self.backend, links.conn
        row, found_by = None, None
        for candidate, how in self._candidates(update, linked, links):
            if isinstance(candidate, Applied):
                return candidate
            copy = mirror.read(backend.store, "customers", [candidate]).get(candidate)
            email = mirror.data_of(copy).get("email") if copy else update.fields.get("email")
            row = backend.fetch_customer(candidate, email, self.permits)
            if row is not None:
                found_by = how
                break
        if row is None and update.fields.get("email"):
            found = self._by_email(update.fields["email"])
            other = links.zoho_id_for("Contacts", int(found["userid"])) if found else None
            if found is not None and (other is None or other == update.zoho_id):
                row, found_by = found, "email"
        if row is None:
            return policy.not_found(update)
        ops_id = int(row["userid"])
        current = records.customer_data(row)
        refusal = policy.ops_id_link_refusal(update, found_by, current["email"], ops_id)
        if refusal:
            return refusal
        fields, notes = policy.writable_fields(update.fields, current["email"], self.write_email)
        changed = {k: v for k, v in fields.items() if (current[k] or None) != (v or None)}
        if changed.get("email"):
            taken = self._by_email(changed["email"])
            if taken is not None and int(taken["userid"]) != ops_id:
                return Applied("conflict", f"the e-mail {changed['email']} already belongs to another OnPrintShop customer "
                               f"(id {taken['userid']})", ops_id=ops_id, found_by=found_by, parameter="email")
        backend.observe_customers([row], report_new=False, conn=conn)
        wanted = {records.CONTACT_INPUT[k]: ("" if v is None else v) for k, v in changed.items()}
        if current.get("external_ref") != update.zoho_id:
            wanted["external_ref"] = update.zoho_id  # the Zoho Contact id, kept in OnPrintShop too
        if not wanted:
            return Applied("applied", "no change: OnPrintShop already has these values", ops_id=ops_id, found_by=found_by,
                           notes=notes)
        data, _ = backend.api.execute(records.SET_CUSTOMER, {"customer_id": ops_id, "input": wanted}, self.permits)
        _check(data.get("setCustomer"), f"customer {ops_id}")
        after = {**row, **{records.CUSTOMER_KEYS[k]: v for k, v in changed.items()}, "external_ref": update.zoho_id}
        backend.observe_customers([after], report_new=False, conn=conn)
        written = ("customers", ops_id, self._version(conn, "customers", ops_id)) if changed else None
        return Applied("applied", "applied: " + ", ".join(sorted(fields)) if changed else "applied: the Zoho id kept in "
                       "OnPrintShop (external_ref)", ops_id=ops_id, found_by=found_by, written=written, notes=notes)

    def _by_email(self, email: str) -> dict | None:
        rows, _ = self.backend.api.rows(records.CUSTOMERS, "customers", "customers", {"email": email, "limit": 5}, self.permits)
        return next((r for r in rows if str(r.get("customers_email_address") or "").casefold() == email.casefold()), None)


def _only_status_moved(before: dict, after_row: dict, title: str) -> bool:
    """Is the order read (`after_row`) the one the gateway knew (`before`, its kept data) with only
    the status moved, to `title`?"""
    after = records.order_data(after_row)
    return (str(before.get("status") or "").casefold() != title.casefold()
            and {**after, "status_id": None} == {**before, "status": after.get("status"), "status_id": None}
            and str(after.get("status") or "").casefold() == title.casefold())


def _check(result, what: str) -> None:
    if not isinstance(result, dict) or not result.get("result"):
        message = result.get("message") if isinstance(result, dict) else None
        raise OpsRefused(f"OnPrintShop refused the change of {what}: {message or 'no reason given'}")
