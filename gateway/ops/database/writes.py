"""Writing one change from Zoho into the OnPrintShop database, in the caller's transaction (never
committed here): find and lock the row, refuse what must not be written, write only what changed,
plus `last_modified` and a status history row (docs/ops-backends.md)."""
from __future__ import annotations

import datetime as dt
import math

import sqlalchemy as sa

from ...state import direct
from ...sync import loopguard
from .. import policy
from ..port import Applied as Result

CONTACT_COLUMNS = {
    "email": "customers_email_address",
    "first_name": "customers_firstname",
    "last_name": "customers_lastname",
    "phone": "customers_telephone",
}


def apply_update(ops, oconn, update, linked, links, write_email: bool = False) -> Result:
    """`linked`: the OnPrintShop id the gateway's link gives for the record (None: no link);
    `links.zoho_id_for(module, ops_id)` reads the gateway's links in the caller's transaction."""
    if update.module == "Contacts":
        return _apply_contact(ops, oconn, links, update, linked, write_email)
    return _apply_deal(ops, oconn, links, update, linked)


ID_COLUMNS = {"customers": "customers_id", "orders": "orders_id"}


def _same_text(ops, column, value):
    # MySQL's utf8mb4 collations already compare case-insensitively (and use the index that way).
    if ops.dialect == "mysql":
        return column == value
    return sa.func.lower(column) == sa.func.lower(value)


# Only the columns a decision reads (each fetched column costs driver work on every delivery); not the id looked up.
READ_COLUMNS = {
    "customers": (*CONTACT_COLUMNS.values(), "last_modified"),
    "orders": ("orders_status_id", "payment_status", "last_modified"),
}


def read_columns(table, table_key: str):
    return [table.c[key] for key in READ_COLUMNS[table_key]]


def _by_id(ops, table_key: str):
    def build(tables):
        table = tables[table_key]
        return (sa.select(*read_columns(table, table_key))
                .where(table.c[ID_COLUMNS[table_key]] == sa.bindparam("ops_id")).with_for_update())

    return ops.statement(f"lock {table_key} by id", build)


def _by_email(ops):
    def build(tables):
        table = tables["customers"]
        return (sa.select(table.c.customers_id, *read_columns(table, "customers"))
                .where(_same_text(ops, table.c.customers_email_address, sa.bindparam("email"))).with_for_update())

    return ops.statement("lock customer by email", build)


def _find_and_lock(ops, oconn, links, update, table_key: str, linked) -> tuple[dict | None, str | None, Result | None]:
    """(row locked for this transaction, found_by, conflict): the conflict when the ops_id Zoho
    sent is linked to another Zoho record."""
    by_id = _by_id(ops, table_key)
    if linked is not None:
        linked = int(linked)
        row = _locked_row(oconn, table_key, by_id, linked)
        if row is not None:
            return row, "link", None
    if update.ops_id is not None:
        row = _locked_row(oconn, table_key, by_id, update.ops_id)
        if row is not None:
            conflict = policy.linked_elsewhere(update, links, table_key)
            return (None, None, conflict) if conflict else (row, "ops_id", None)
    if update.module == "Contacts" and update.fields.get("email"):
        found = oconn.execute(_by_email(ops), {"email": update.fields["email"]}).first()
        if found is not None:
            row = dict(zip(("customers_id", *READ_COLUMNS["customers"]), found, strict=True))
            other = links.zoho_id_for(update.module, int(row["customers_id"]))
            if other is None or other == update.zoho_id:
                return row, "email", None
    return None, None, None


def _locked_row(oconn, table_key: str, statement, ops_id: int) -> dict | None:
    """The row with this id, locked until commit (FOR UPDATE; SQLite's BEGIN IMMEDIATE already
    holds the lock), keyed by reference column names whatever the store calls them."""
    rows = direct.rows(oconn, statement, {"ops_id": ops_id})
    if not rows:
        return None
    found = dict(zip(READ_COLUMNS[table_key], rows[0], strict=True))
    found[ID_COLUMNS[table_key]] = ops_id
    return found


def update_row(ops, oconn, table_key: str, ops_id: int, values: dict) -> None:
    """UPDATE … SET <values, by reference column key> WHERE id = ops_id."""
    def build(tables):
        table = tables[table_key]
        return table.update().where(table.c[ID_COLUMNS[table_key]] == sa.bindparam("where_id"))

    direct.run(oconn, ops.statement(f"update {table_key}", build), {"where_id": ops_id, **values})


def stale_against_row(ops, update, last_modified, ops_id: int, found_by: str) -> Result | None:
    """"stale" when the row changed in OnPrintShop after this Zoho change."""
    if not isinstance(last_modified, dt.datetime):
        # NULL, or MySQL's zero date (text from PyMySQL, NULL from mysqlclient): no usable time,
        # so only Zoho's order counts.
        return None
    row_time = ops.epoch_from_local(last_modified)
    # Whole seconds: OnPrintShop keeps DATETIME to the second.
    if math.floor(update.modified_time) < row_time:
        return Result("stale", f"the record changed in OnPrintShop at {last_modified:%Y-%m-%d %H:%M:%S}, after this Zoho change",
                      ops_id=ops_id, found_by=found_by)
    return None


def _locate(ops, oconn, links, update, table_key: str, id_column: str, linked):
    """The record's row, locked, with its id and how it was found; or the answer that ends here
    (conflict, not found, stale) as the last item."""
    row, found_by, conflict = _find_and_lock(ops, oconn, links, update, table_key, linked)
    if conflict:
        return None, None, None, conflict
    if row is None:
        return None, None, None, policy.not_found(update)
    ops_id = int(row[id_column])
    return row, ops_id, found_by, stale_against_row(ops, update, row["last_modified"], ops_id, found_by)


def _no_change(ops, update, table_key: str, ops_id: int, found_by, row_last_modified) -> Result:
    """OnPrintShop already has the values. At this delivery's own `last_modified` it is likely our
    earlier write whose state-store commit failed: the loop-guard row is recorded again, or the
    poller would push Zoho's values back (docs/inbound.md, "The inbox")."""
    written = None
    if row_last_modified is not None and (
            loopguard.stamp(row_last_modified) == loopguard.stamp(ops.local_from_epoch(update.modified_time))):
        written = (table_key, ops_id, row_last_modified)
    return Result("applied", "no change: OnPrintShop already has these values", ops_id=ops_id, found_by=found_by,
                  written=written)


_MYSQL_DUPLICATE_KEY = (1062, 1586)  # ER_DUP_ENTRY, ER_DUP_ENTRY_WITH_KEY_NAME


def _duplicate_email(ops, exc: sa.exc.IntegrityError, email) -> bool:
    """Is this error a duplicate key on the customers' e-mail column (not NOT NULL, a foreign
    key, a trigger's refusal or another unique key)? Drivers name the column (SQLite, PostgreSQL's
    detail) or the key and the duplicate value (MySQL/MariaDB: "Duplicate entry 'x' for key 'k'")."""
    orig = getattr(exc, "orig", None)
    args = getattr(orig, "args", ()) or ()
    text = " ".join(str(a) for a in args).casefold()
    diag = getattr(orig, "diag", None)
    detail = str(getattr(diag, "message_detail", "") or "").casefold()
    column = ops.tables["customers"].c.customers_email_address.name.casefold()
    if args and isinstance(args[0], int):  # PyMySQL: (errno, message)
        if args[0] not in _MYSQL_DUPLICATE_KEY:
            return False
        return column in text or (email is not None and f"'{str(email).casefold()}'" in text)
    if getattr(orig, "sqlstate", None) == "23505":  # PostgreSQL unique_violation
        return f"({column})" in detail or column in text
    return "unique constraint failed" in text and f".{column}" in text  # SQLite


# -- contacts → customers ---------------------------------------------------------------------------
def _apply_contact(ops, oconn, links, update, linked, write_email: bool) -> Result:
    row, ops_id, found_by, refusal = _locate(ops, oconn, links, update, "customers", "customers_id", linked)
    if refusal:
        return refusal
    refusal = policy.ops_id_link_refusal(update, found_by, row["customers_email_address"], ops_id)
    if refusal:
        return refusal
    fields, notes = policy.writable_fields(update.fields, row["customers_email_address"], write_email)

    email = fields.get("email")
    if email is not None:
        def build(tables):
            c = tables["customers"].c
            return sa.select(c.customers_id).where(_same_text(ops, c.customers_email_address, sa.bindparam("email")),
                                                   c.customers_id != sa.bindparam("ops_id"))

        taken = oconn.execute(ops.statement("email taken", build), {"email": email, "ops_id": ops_id}).first()
        if taken is not None:
            return Result("conflict", f"the e-mail {email} already belongs to another OnPrintShop customer (id {taken[0]})",
                          ops_id=ops_id, found_by=found_by, parameter="email")

    values = {CONTACT_COLUMNS[name]: value for name, value in fields.items()}
    changed = {key: value for key, value in values.items() if row[key] != value}
    if not changed:
        unchanged = _no_change(ops, update, "customers", ops_id, found_by, row["last_modified"])
        unchanged.notes = notes
        return unchanged
    last_modified = ops.local_from_epoch(update.modified_time)
    written = {"last_modified": last_modified, **changed}
    if "customers_email_address" not in changed:
        # No savepoint (two round trips fewer): any refusal here is OnPrintShop's, raised for the inbox to retry.
        update_row(ops, oconn, "customers", ops_id, written)
    else:
        try:
            with oconn.begin_nested():
                update_row(ops, oconn, "customers", ops_id, written)
        except sa.exc.IntegrityError as exc:
            # Only a duplicate e-mail is Zoho's conflict (the savepoint keeps PostgreSQL's transaction usable).
            if _duplicate_email(ops, exc, email):
                return Result("conflict", f"the e-mail {email} already belongs to another OnPrintShop customer",
                              ops_id=ops_id, found_by=found_by, parameter="email")
            raise
    return Result("applied", "applied: " + ", ".join(sorted(fields)), ops_id=ops_id, found_by=found_by,
                  written=("customers", ops_id, last_modified), notes=notes)


# -- deals → orders ---------------------------------------------------------------------------------
def _apply_deal(ops, oconn, links, update, linked) -> Result:
    row, ops_id, found_by, refusal = _locate(ops, oconn, links, update, "orders", "orders_id", linked)
    if refusal:
        return refusal
    decided = decide_deal(ops, oconn, update, row, ops_id, found_by)
    if isinstance(decided, Result):
        return decided
    write_deal(ops, oconn, update, ops_id, *decided)
    return deal_applied(update, ops_id, found_by, decided[1])


def decide_deal(ops, oconn, update, row: dict, ops_id: int, found_by: str):
    """What the Deal's change does to its order row (locked, not stale): the answer that ends
    here (invalid stage, no change), or (changed columns, new status, last_modified) to write."""
    changed: dict = {}
    status = None
    if "stage" in update.fields:
        wanted = update.fields["stage"].casefold()
        statuses = ops.statuses()
        if wanted not in statuses:
            statuses = ops.statuses(conn=oconn)  # a status added in OnPrintShop since the cache was filled
        if wanted not in statuses:
            return Result("invalid", f"stage {update.fields['stage']!r} is not an OnPrintShop order status "
                          "(nor an alias in the mapping)", ops_id=ops_id, found_by=found_by, parameter="stage")
        status = statuses[wanted]
        if row["orders_status_id"] != status[0]:
            changed["orders_status_id"] = status[0]
    if "payment_status" in update.fields and row["payment_status"] != update.fields["payment_status"]:
        changed["payment_status"] = update.fields["payment_status"]
    if not changed:
        return _no_change(ops, update, "orders", ops_id, found_by, row["last_modified"])
    return changed, ops.local_from_epoch(update.modified_time), status


def write_deal(ops, oconn, update, ops_id: int, changed: dict, last_modified, status) -> None:
    update_row(ops, oconn, "orders", ops_id, {"last_modified": last_modified, **changed})
    if "orders_status_id" in changed:
        direct.run(oconn, insert_history(ops), history_row(update, ops_id, last_modified, status))


def history_row(update, ops_id: int, last_modified, status) -> dict:
    return {"orders_id": ops_id, "orders_status_id": status[0], "date_added": last_modified, "customer_notified": 0,
            "comments": f"Zoho CRM: Deal {update.zoho_id} moved to stage {status[1]}"}


def insert_history(ops):
    return ops.statement("insert history", lambda tables: tables["orders_status_history"].insert())


def deal_applied(update, ops_id: int, found_by: str, last_modified) -> Result:
    return Result("applied", "applied: " + ", ".join(sorted(update.fields)), ops_id=ops_id, found_by=found_by,
                  written=("orders", ops_id, last_modified))
