"""Links between OnPrintShop and Zoho records (`gw_links`): per (Zoho module name, OnPrintShop id)
the Zoho id and a hash of what was last sent. Outbound writes them after a push; inbound reads
them to find a delivery's record (and writes them when it found it by `ops_id` or e-mail)."""
from __future__ import annotations

import time

import sqlalchemy as sa

from ..state import direct
from ..state.tables import links_table

_ZOHO_ID_FOR = sa.select(links_table.c.zoho_id).where(links_table.c.module == sa.bindparam("module"),
                                                      links_table.c.ops_id == sa.bindparam("ops_id"))


def zoho_id_for(conn, module: str, ops_id: int) -> str | None:
    found = direct.rows(conn, _ZOHO_ID_FOR, {"module": module, "ops_id": ops_id})
    return found[0][0] if found else None


_ZOHO_IDS_FOR = sa.select(links_table.c.ops_id, links_table.c.zoho_id).where(
    links_table.c.module == sa.bindparam("module"), links_table.c.ops_id.in_(sa.bindparam("ops_ids", expanding=True)))


def zoho_ids_for(conn, keys) -> dict[tuple, str | None]:
    """`zoho_id_for` for several (module, ops_id) keys, one statement per module: {key: zoho_id or None}."""
    by_module: dict[str, list[int]] = {}
    for module, ops_id in keys:
        by_module.setdefault(module, []).append(int(ops_id))
    out: dict[tuple, str | None] = {}
    for module, ops_ids in sorted(by_module.items()):
        out.update(((module, ops_id), None) for ops_id in ops_ids)
        out.update(((module, int(ops_id)), zoho_id) for ops_id, zoho_id in conn.execute(
            _ZOHO_IDS_FOR, {"module": module, "ops_ids": sorted(ops_ids)}))
    return out


def ops_id_for(conn, module: str, zoho_id: str) -> int | None:
    row = conn.execute(
        sa.select(links_table.c.ops_id).where(links_table.c.module == module, links_table.c.zoho_id == zoho_id)
    ).first()
    return None if row is None else int(row[0])


def sent_hash_for(conn, module: str, ops_id: int) -> str | None:
    row = conn.execute(
        sa.select(links_table.c.sent_hash).where(links_table.c.module == module, links_table.c.ops_id == ops_id)
    ).first()
    return None if row is None else row[0]


def save(conn, module: str, ops_id: int, zoho_id: str, sent_hash: str | None = None) -> None:
    """Insert or update the link; a Zoho id linked to another OnPrintShop id moves to this one."""
    conn.execute(
        links_table.delete().where(
            links_table.c.module == module, links_table.c.zoho_id == zoho_id, links_table.c.ops_id != ops_id
        )
    )
    values = {"zoho_id": zoho_id, "updated_at": time.time()}
    if sent_hash is not None:
        values["sent_hash"] = sent_hash
    updated = conn.execute(
        links_table.update().where(links_table.c.module == module, links_table.c.ops_id == ops_id).values(**values)
    ).rowcount
    if not updated:
        conn.execute(links_table.insert().values(module=module, ops_id=ops_id, **values))


def insert_found(conn, rows: list[tuple[str, int, str, bool]]) -> None:
    """Links inbound found (module, ops_id, zoho_id, moved), none of whose OnPrintShop ids was
    linked: a moved Zoho id's old link goes first; then one multi-row INSERT."""
    now = time.time()
    for module in sorted({row[0] for row in rows if row[3]}):
        conn.execute(links_table.delete().where(links_table.c.module == module, links_table.c.zoho_id.in_(
            [zoho_id for m, _ops_id, zoho_id, moved in rows if moved and m == module])))
    conn.execute(links_table.insert(), [{"module": module, "ops_id": ops_id, "zoho_id": zoho_id, "updated_at": now}
                                        for module, ops_id, zoho_id, _moved in rows])


def forget(conn, module: str, ops_id: int) -> None:
    conn.execute(links_table.delete().where(links_table.c.module == module, links_table.c.ops_id == ops_id))


def save_many(conn, module: str, rows: list[tuple[int, str, str]]) -> None:
    """`save` for a batch of (ops_id, zoho_id, sent_hash) in a few statements; on a conflict it
    cannot sort out (two ids swapping Zoho records in one batch) it falls back to `save` per row."""
    if not rows:
        return
    t = links_table
    now = time.time()
    ops_ids = [r[0] for r in rows]
    zoho_ids = [r[1] for r in rows]
    try:
        with conn.begin_nested():
            conn.execute(t.delete().where(t.c.module == module, t.c.zoho_id.in_(zoho_ids), t.c.ops_id.not_in(ops_ids)))
            existing = set(conn.execute(sa.select(t.c.ops_id).where(t.c.module == module, t.c.ops_id.in_(ops_ids))).scalars())
            updates = [{"m": module, "o": o, "z": z, "h": h, "u": now} for o, z, h in rows if o in existing]
            inserts = [{"module": module, "ops_id": o, "zoho_id": z, "sent_hash": h, "updated_at": now}
                       for o, z, h in rows if o not in existing]
            if updates:
                conn.execute(
                    t.update().where(t.c.module == sa.bindparam("m"), t.c.ops_id == sa.bindparam("o"))
                    .values(zoho_id=sa.bindparam("z"), sent_hash=sa.bindparam("h"), updated_at=sa.bindparam("u")),
                    updates,
                )
            if inserts:
                conn.execute(t.insert(), inserts)
    except sa.exc.IntegrityError:
        for ops_id, zoho_id, digest in rows:
            save(conn, module, ops_id, zoho_id, digest)
