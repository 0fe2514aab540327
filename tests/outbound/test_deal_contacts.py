"""Deals whose customer is the problem: missing in OnPrintShop, or its Contact deleted in Zoho.

Neither may leave a Deal re-queued for ever nor dead for a reason a retry cannot cure.
"""
from __future__ import annotations

import time

import sqlalchemy as sa

from gateway.sync import links
from gateway.outbound import batch, queue
from gateway.simulator import Response
from gateway.state import tables


def linked(gw, module, ops_id):
    with gw.rt.store.engine.connect() as conn:
        return links.zoho_id_for(conn, module, ops_id)


def jobs(gw, module):
    t = tables.jobs_table.c
    with gw.rt.store.engine.connect() as conn:
        return conn.execute(sa.select(t.ops_id, t.state, t.attempts, t.last_error).where(t.module == module)).all()


def delete_customer_row(gw, customer_id):
    """The customer row disappears while its order stays (OnPrintShop does not enforce the key)."""
    engine = gw.rt.ops.engine
    if engine.dialect.name == "sqlite":
        raw = engine.raw_connection()
        try:
            raw.execute("PRAGMA foreign_keys = OFF")
            raw.execute("DELETE FROM customers WHERE customers_id = ?", (customer_id,))
            raw.commit()
        finally:
            raw.close()
        return
    t = gw.rt.ops.tables["customers"]
    with engine.begin() as conn:
        conn.exec_driver_sql("SET FOREIGN_KEY_CHECKS = 0")
        conn.execute(t.delete().where(t.c.customers_id == customer_id))
        conn.exec_driver_sql("SET FOREIGN_KEY_CHECKS = 1")


def update_order(gw, order_id, **values):
    t = gw.rt.ops.tables["orders"]
    with gw.rt.ops.begin() as conn:
        conn.execute(t.update().where(t.c.orders_id == order_id).values(**values))


def test_an_order_whose_customer_is_not_in_onprintshop_dies_saying_so(gw, monkeypatch):
    monkeypatch.setattr(batch, "WAIT_FOR_CONTACT_SECONDS", 0)  # a loop would spin at once, not every 5 s
    customer, other = gw.add_customers(2)
    (order,) = gw.add_orders([customer])
    delete_customer_row(gw, customer)
    queue.enqueue(gw.rt, "Deals", [order])

    batches = gw.drain(max_batches=20)
    assert batches < 20  # the queue settles instead of re-queuing the customer for ever
    status = queue.status(gw.rt)
    assert (status["pending"], status["in_flight"], status["dead"]) == (0, 0, 1)
    (dead,) = queue.dead_jobs(gw.rt)
    assert (dead["module"], dead["ops_id"]) == ("Deals", order)
    assert dead["last_error"].startswith(f"customer {customer} of order {order} is not in the OnPrintShop database")
    assert gw.fake.upsert_calls["Contacts"] == 0 and gw.fake.upsert_calls["Deals"] == 0

    # The order is given an existing customer in OnPrintShop: the change revives the Deal.
    update_order(gw, order, customers_id=other)
    queue.enqueue(gw.rt, "Deals", [order])
    gw.drain()
    (deal,) = gw.fake.records["Deals"].values()
    assert deal["Contact_Name"] == {"id": linked(gw, "Contacts", other)}
    assert queue.status(gw.rt)["dead"] == 0


def test_a_deal_whose_contact_was_deleted_in_zoho_relinks_its_customer_and_goes_out(gw):
    (customer,) = gw.add_customers(1)
    (order,) = gw.add_orders([customer])
    queue.enqueue(gw.rt, "Contacts", [customer])
    queue.enqueue(gw.rt, "Deals", [order])
    gw.drain()
    old_contact = linked(gw, "Contacts", customer)
    age_links(gw)  # pushed long ago
    with gw.fake.lock:
        del gw.fake.records["Contacts"][old_contact]  # someone deleted the Contact in Zoho

    update_order(gw, order, orders_status_id=3)  # the order moves on; the Deal is pushed again
    queue.enqueue(gw.rt, "Deals", [order])
    gw.drain()

    new_contact = linked(gw, "Contacts", customer)
    assert new_contact and new_contact != old_contact and new_contact in gw.fake.records["Contacts"]
    (deal,) = gw.fake.records["Deals"].values()
    assert deal["Stage"] == "Printing" and deal["Contact_Name"] == {"id": new_contact}
    assert {(j.state, j.attempts) for j in jobs(gw, "Deals")} == {("done", 0)}  # no attempt counted, none left
    assert queue.status(gw.rt)["dead"] == 0


def age_links(gw, seconds=3600):
    with gw.rt.store.begin() as conn:
        conn.execute(tables.links_table.update().values(updated_at=time.time() - seconds))


def test_a_deal_zoho_refuses_a_fresh_contact_for_dies_with_zohos_message_after_one_relink(gw_sqlite):
    gw = gw_sqlite
    (customer,) = gw.add_customers(1)
    (order,) = gw.add_orders([customer])
    queue.enqueue(gw.rt, "Contacts", [customer])
    gw.drain()
    age_links(gw)
    contact = linked(gw, "Contacts", customer)

    @gw.fake.route("POST", r"/crm/v\d+/Deals/upsert", name="deals_refused")
    def _refused(req):  # Zoho refuses the Contact whatever it is (e.g. one the Deal's owner may not see)
        data = req.json()["data"]
        return Response(400, {"data": [
            {"code": "INVALID_DATA", "details": {"api_name": "Contact_Name", "json_path": f"$.data[{i}].Contact_Name"},
             "message": "the related id given seems to be invalid", "status": "error"} for i in range(len(data))]})

    gw.fake.routes.insert(0, gw.fake.routes.pop())
    queue.enqueue(gw.rt, "Deals", [order])
    batches = gw.drain(max_batches=20)

    assert batches < 20
    assert gw.fake.calls["deals_refused"] == 2  # sent, relinked once, sent again, then given up
    assert gw.fake.upsert_calls["Contacts"] == 2 and linked(gw, "Contacts", customer) == contact  # same e-mail, same Contact
    (dead,) = queue.dead_jobs(gw.rt)
    assert (dead["module"], dead["ops_id"]) == ("Deals", order)
    assert "INVALID_DATA: the related id given seems to be invalid (field Contact_Name)" in dead["last_error"]
    assert f"customer {customer}" in dead["last_error"]
