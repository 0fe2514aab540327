"""The change poller: one process queues OnPrintShop customers and orders whose `last_modified`
moved past its watermark, re-reading an overlap, skipping the gateway's own writes
(docs/outbound.md, "The change poller")."""
from __future__ import annotations

import datetime as dt
import logging
import random

import sqlalchemy as sa

from ..ops import OpsError
from ..state.leases import leased_loop
from ..state.engine import lost_race, rerun
from ..state.tables import polled_versions_table
from ..sync import loopguard
from ..sync.modules import MODULES
from ..zoho import connection
from . import queue

log = logging.getLogger("gateway.outbound.poller")

LEASE_NAME = "outbound.poller"
SETTLE_SECONDS = 5
# Re-read behind the watermark each round: rows land late (lagging clocks, slow commits); see docs/outbound.md.
OVERLAP = dt.timedelta(minutes=10)
SET_BACK_WINDOW = dt.timedelta(hours=2)  # covers the repeated hour of any zone's clock change
PAGE = 1000
FORMAT = "%Y-%m-%d %H:%M:%S"


def watermark_setting(table: str) -> str:
    return f"outbound.watermark.{table}"


def _read_setting(rt, table: str) -> tuple[tuple[dt.datetime, int] | None, dt.datetime | None]:
    """(watermark, floor): the floor is where the first round started; nothing before it is re-read."""
    value = rt.store.get_setting(watermark_setting(table))
    if not value:
        return None, None
    floor = dt.datetime.strptime(value["floor"], FORMAT) if value.get("floor") else None
    return (dt.datetime.strptime(value["last_modified"], FORMAT), int(value["id"])), floor


def get_watermark(rt, table: str) -> tuple[dt.datetime, int] | None:
    return _read_setting(rt, table)[0]


def set_watermark(rt, table: str, last_modified: dt.datetime, ops_id: int, floor: dt.datetime | None = None) -> None:
    value = {"last_modified": last_modified.strftime(FORMAT), "id": int(ops_id)}
    if floor is not None:
        value["floor"] = floor.strftime(FORMAT)
    rt.store.set_setting(watermark_setting(table), value)


def run(rt, stop) -> None:
    seconds = rt.config.get("GATEWAY_POLL_SECONDS")
    if not seconds or seconds <= 0:
        log.info("change poller off (GATEWAY_POLL_SECONDS=0)")
        return
    leased_loop(rt.store, stop, LEASE_NAME, lambda: poll_once(rt), every=lambda: seconds * random.uniform(0.9, 1.1),
                lease_seconds=seconds * 3 + 30, keep_lease=True, log=log, what="change poller")


def poll_once(rt, settle: float = SETTLE_SECONDS) -> dict[str, int]:
    """One round over both tables; returns {table: records queued}."""
    synced = connection.modules(rt)
    for module in MODULES:
        try:
            rt.ops.refresh_changes(module.table)  # a backend that must look for changes first (the API) does it now
        except OpsError as exc:
            log.warning("poller: looking for changed %s failed (%s); what was found before is still queued", module.table, exc)
    until = rt.ops.now_local() - dt.timedelta(seconds=settle)
    queued: dict[str, int] = {}
    for table, module, setting in ((m.table, m.zoho, m.setting) for m in MODULES):
        mark, floor = _read_setting(rt, table)
        if mark is None:
            # First run: start from now; existing records are pushed with `push … --all`.
            set_watermark(rt, table, until, 2**62, floor=until)
            queued[table] = 0
            continue
        send = not synced or setting in synced
        # After clocks go back, rows of the repeated hour carry times behind the watermark: re-read them too.
        set_back = rt.ops.set_back_within((OVERLAP + SET_BACK_WINDOW).total_seconds())
        behind = OVERLAP + set_back
        start = mark[0] - behind
        if floor is not None and start < floor - set_back:
            start = floor - set_back
        cursor = (start, 0)
        total = 0
        while True:
            rows = rt.ops.changed_since(table, cursor, until=until, limit=PAGE)
            if not rows:
                break
            if send:
                total += _queue_new_versions(rt, table, module, rows)
            cursor = (rows[-1][1], rows[-1][0])
            if cursor > mark:
                mark = cursor
                set_watermark(rt, table, mark[0], mark[1], floor=floor)
            if len(rows) < PAGE:
                break
        _forget_versions_before(rt, table, mark[0] - behind)
        queued[table] = total
        if total:
            log.info("poller queued %d changed %s", total, table)
    return queued


def _queue_new_versions(rt, table: str, module: str, rows) -> int:
    """Queue the rows (id, last_modified) not yet queued in this version and not written by the
    gateway from Zoho; remember them, in the same transaction. Returns how many were queued."""
    versions = {ops_id: loopguard.stamp(stamp) for ops_id, stamp in rows}
    v = polled_versions_table.c

    def work(conn):
        known = {(int(r.ops_id), r.last_modified) for r in conn.execute(
            sa.select(v.ops_id, v.last_modified).where(v.table_key == table, v.ops_id.in_(list(versions)))
        ).all()}
        fresh = [ops_id for ops_id, stamp in rows if (ops_id, versions[ops_id]) not in known]
        wanted = [ops_id for ops_id in fresh
                  if not loopguard.written_by_gateway(conn, table, ops_id, versions[ops_id])]
        if len(fresh) > len(wanted):
            log.debug("poller skipped %d %s changes the gateway wrote from Zoho", len(fresh) - len(wanted), table)
        if wanted:
            queue.enqueue_in(conn, rt.store, module, wanted)
            conn.execute(polled_versions_table.insert(),
                         [{"table_key": table, "ops_id": ops_id, "last_modified": versions[ops_id]} for ops_id in wanted])
        return len(wanted)

    # Another poller (a lease that lapsed) or an enqueue may race us: read again, merging.
    return rerun(lambda: rt.store.transaction(work), attempts=5, when=lost_race)


def _forget_versions_before(rt, table: str, before: dt.datetime) -> None:
    v = polled_versions_table.c
    with rt.store.begin() as conn:
        conn.execute(polled_versions_table.delete().where(
            v.table_key == table, v.last_modified < before.strftime(FORMAT)))
