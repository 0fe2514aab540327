"""Several Deals from Zoho written into OnPrintShop's orders together, in the caller's transaction:
the rows locked in one statement, each decided as `writes._apply_deal` decides it, the status
history rows inserted in one statement (docs/performance.md, "What group commit saves")."""
from __future__ import annotations

import sqlalchemy as sa

from .. import policy
from ..port import Applied as Result
from . import writes


def _lock_orders(ops, nowait: bool):
    def build(tables):
        table = tables["orders"]
        return (sa.select(table.c.orders_id, *writes.read_columns(table, "orders"))
                .where(table.c.orders_id.in_(sa.bindparam("ids", expanding=True)))
                .order_by(table.c.orders_id).with_for_update(nowait=nowait))

    return ops.statement(f"lock orders by ids{' nowait' if nowait else ''}", build)


def _can_refuse_to_wait(dialect) -> bool:
    """Does the server take `FOR UPDATE NOWAIT` (MariaDB 10.3+, MySQL 8.0+, PostgreSQL)? Then a
    row OnPrintShop holds fails the batch at once, and only the change alone waits for it."""
    if dialect.name == "postgresql":
        return True
    version = dialect.server_version_info or ()
    if dialect.name != "mysql" or not version:
        return False
    return version >= ((10, 3) if getattr(dialect, "is_mariadb", False) else (8, 0))


def _order_id(update, linked) -> int | None:
    """The order a Deal is looked up by: its link, else the `ops_id` Zoho sent (None: not a Deal, or neither)."""
    if update.module != "Deals":
        return None
    return int(linked) if linked is not None else update.ops_id


def together_indices(items) -> list[int]:
    """Where the batch's changes that can go together are: Deals with an order id, on distinct
    orders; none unless two or more can."""
    at = [i for i, (update, linked) in enumerate(items) if _order_id(update, linked) is not None]
    ids = {_order_id(*items[i]) for i in at}
    return at if len(at) > 1 and len(ids) == len(at) else []


def apply_deals(ops, oconn, items, links) -> list[Result] | None:
    """Per item its `Applied`, as one at a time would give it; `items` as `together_indices`
    picks them. None (nothing written) when a row is missing (a link to a deleted order, an
    unknown `ops_id`): the caller then applies the changes one by one. A refusal by the database, or a
    row locked, is raised, and nothing of the batch may be kept: the caller rolls back and goes
    one by one."""
    ids = [_order_id(update, linked) for update, linked in items]
    lock = _lock_orders(ops, nowait=_can_refuse_to_wait(oconn.dialect))
    rows = {int(row[0]): dict(zip(writes.READ_COLUMNS["orders"], row[1:], strict=True))
            for row in oconn.execute(lock, {"ids": sorted(ids)})}
    if len(rows) < len(ids):
        return None
    results: list = []
    history: list[dict] = []
    for (update, linked), ops_id in zip(items, ids, strict=True):
        found_by = "link" if linked is not None else "ops_id"
        conflict = policy.linked_elsewhere(update, links, "orders") if found_by == "ops_id" else None
        if conflict:
            results.append(conflict)
            continue
        row = rows[ops_id]
        stale = writes.stale_against_row(ops, update, row["last_modified"], ops_id, found_by)
        if stale:
            results.append(stale)
            continue
        decided = writes.decide_deal(ops, oconn, update, row, ops_id, found_by)
        if isinstance(decided, Result):
            results.append(decided)
            continue
        changed, last_modified, status = decided
        writes.update_row(ops, oconn, "orders", ops_id, {"last_modified": last_modified, **changed})
        if "orders_status_id" in changed:
            history.append(writes.history_row(update, ops_id, last_modified, status))
        results.append(writes.deal_applied(update, ops_id, found_by, last_modified))
    if history:
        oconn.execute(writes.insert_history(ops), history)
    return results
