"""The change poller: queues OnPrintShop customers and orders whose `last_modified` moved.

Every GATEWAY_POLL_SECONDS (0 turns it off) one process of the deployment (the holder of the
lease `outbound.poller`) reads the rows changed after its stored watermark, per table, in
(`last_modified`, id) order, and queues them; the watermark (settings
`outbound.watermark.customers` / `.orders`) moves past each page once it is queued, so a
restart resumes where it stopped and nothing is skipped or queued twice.

Changes the gateway's own inbound side wrote from Zoho are skipped (gateway.inbound.loopguard):
pushing them back would ping-pong and burn Zoho credits. Rows stamped within the last
SETTLE_SECONDS wait for the next round, so a transaction still committing rows of the current
second (or the loop guard row written just after an inbound write) is not passed over.

On its very first run the poller starts from "now": existing records are sent once with
`flask --app wsgi push customers --all` (and `orders`), not by surprise.
"""
from __future__ import annotations

import datetime as dt
import logging
import random

import sqlalchemy as sa

from ..ops import reads
from ..store import new_holder_id
from . import queue

log = logging.getLogger("gateway.outbound.poller")

LEASE_NAME = "outbound.poller"
SETTLE_SECONDS = 5
PAGE = 1000
TABLES = (("customers", "Contacts", "contacts"), ("orders", "Deals", "deals"))
FORMAT = "%Y-%m-%d %H:%M:%S"


def watermark_setting(table: str) -> str:
    return f"outbound.watermark.{table}"


def get_watermark(rt, table: str) -> tuple[dt.datetime, int] | None:
    value = rt.store.get_setting(watermark_setting(table))
    if not value:
        return None
    return dt.datetime.strptime(value["last_modified"], FORMAT), int(value["id"])


def set_watermark(rt, table: str, last_modified: dt.datetime, ops_id: int) -> None:
    rt.store.set_setting(watermark_setting(table), {"last_modified": last_modified.strftime(FORMAT), "id": int(ops_id)})


def run(rt, stop) -> None:
    seconds = rt.config.get("GATEWAY_POLL_SECONDS")
    if not seconds or seconds <= 0:
        log.info("change poller off (GATEWAY_POLL_SECONDS=0)")
        return
    holder = new_holder_id()
    try:
        while not stop.wait(seconds * random.uniform(0.9, 1.1)):
            try:
                if rt.store.try_lease(LEASE_NAME, holder, seconds * 3 + 30):
                    poll_once(rt)
            except sa.exc.SQLAlchemyError as exc:
                log.warning("change poller could not read now (%s); trying again next round", exc.__class__.__name__)
    finally:
        try:
            rt.store.release_lease(LEASE_NAME, holder)
        except sa.exc.SQLAlchemyError:
            pass


def poll_once(rt, settle: float = SETTLE_SECONDS) -> dict[str, int]:
    """One round over both tables; returns {table: records queued}."""
    from ..inbound import loopguard
    from ..zoho import connection

    synced = connection.modules(rt)
    until = rt.ops.now_local() - dt.timedelta(seconds=settle)
    queued: dict[str, int] = {}
    for table, module, setting in TABLES:
        mark = get_watermark(rt, table)
        if mark is None:
            # First run: start from now; existing records are pushed with `push … --all`.
            set_watermark(rt, table, until, 2**62)
            queued[table] = 0
            continue
        total = 0
        while True:
            rows = reads.changed_since(rt.ops, table, mark, until=until, limit=PAGE)
            if not rows:
                break
            with rt.store.engine.connect() as conn:
                wanted = [ops_id for ops_id, stamp in rows
                          if not loopguard.written_by_gateway(conn, table, ops_id, stamp)]
            if wanted and (not synced or setting in synced):
                queue.enqueue(rt, module, wanted)
                total += len(wanted)
            skipped = len(rows) - len(wanted)
            if skipped:
                log.debug("poller skipped %d %s changes the gateway wrote from Zoho", skipped, table)
            mark = (rows[-1][1], rows[-1][0])
            set_watermark(rt, table, mark[0], mark[1])
            if len(rows) < PAGE:
                break
        queued[table] = total
        if total:
            log.info("poller queued %d changed %s", total, table)
    return queued
