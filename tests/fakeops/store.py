"""The fake OnPrintShop's data and GraphQL root: customers, orders, statuses, the two mutations,
following the readings where OnPrintShop documents nothing (docs/ops-api.md, "The fake API")."""
from __future__ import annotations

import datetime as dt
import itertools

from graphql import GraphQLError

MAX_PAGE = 250
DEFAULT_PAGE = 10
STATUSES = ((1, "Pending"), (2, "Order Processing"), (3, "Printing"), (4, "Shipped"), (5, "Order Completed"), (6, "Cancelled"))


def stamp(when: dt.datetime) -> str:
    return when.strftime("%Y-%m-%d %H:%M:%S")


def _bound(text: str | None, end: bool) -> str | None:
    if not text:
        return None
    text = str(text).strip()
    if len(text) == 10:
        return text + (" 23:59:59" if end else " 00:00:00")
    return text.replace("T", " ")[:19]


def _page(rows: list, limit, offset, name: str, total_name: str, items: str):
    limit = min(int(limit or DEFAULT_PAGE), MAX_PAGE)
    offset = int(offset or 0)
    page = rows[offset:offset + limit]
    if not page:
        raise GraphQLError("Data not found", extensions={"code": "DATA_NOT_FOUND"})
    return {"currentCount": len(page), items: page, total_name: len(rows)}


class Store:
    def __init__(self, fake):
        self.fake = fake
        self.customers: dict[int, dict] = {}
        self.orders: dict[int, dict] = {}
        self.statuses = [{"process_status_id": sid, "process_status_title": title, "status_type": "order",
                          "process_status_internal": sid, "process_status_set_as": None} for sid, title in STATUSES]
        self.statuses.append({"process_status_id": 26, "process_status_title": "Awaiting Artwork", "status_type": "product",
                              "process_status_internal": 26, "process_status_set_as": None})
        self.history: dict[int, list[dict]] = {}
        self.emails: list[tuple[int, str]] = []
        self._customer_ids = itertools.count(1)
        self._order_ids = itertools.count(1001)

    def now(self) -> dt.datetime:
        return dt.datetime.utcfromtimestamp(self.fake.now()).replace(microsecond=0)

    # -- filling it (tests) -------------------------------------------------------------------------
    def add_customer(self, first="Ada", last="Lovelace", email=None, phone=None, registered=None) -> int:
        cid = next(self._customer_ids)
        self.customers[cid] = {"userid": cid, "customers_first_name": first, "customers_last_name": last,
                               "customers_email_address": email or f"customer{cid}@example.com", "customers_telephone": phone,
                               "customers_company": None, "customers_status": "1", "external_ref": None,
                               "customers_register_date": stamp(registered or self.now())}
        return cid

    def add_order(self, customer_id: int, status: str = "Pending", total: float = 12.5, currency: str = "USD",
                  modified: dt.datetime | None = None, invoice_date: str | None = None) -> int:
        oid = next(self._order_ids)
        sid = next(s["process_status_id"] for s in self.statuses if s["process_status_title"] == status)
        self.orders[oid] = {"orders_id": oid, "order_number": str(oid), "user_id": customer_id, "orders_status_id": sid,
                            "order_status": status, "payment_status_title": "Unpaid", "total_amount": total,
                            "order_amount": total, "tax_amount": {"total": 0}, "currency_code": currency,
                            "order_last_modified_date": stamp(modified or self.now()), "invoice_date": invoice_date,
                            "payment_date": None}
        self.history[oid] = []
        return oid

    def touch(self, order_id: int, **values) -> None:
        """A change made in OnPrintShop: new values and a new last-modified date."""
        self.orders[order_id].update(values, order_last_modified_date=stamp(self.now()))

    def _with_customer(self, order: dict) -> dict:
        return {**order, "customer": self.customers.get(order["user_id"])}

    # -- queries ------------------------------------------------------------------------------------
    def orders_query(self, info, **args):
        args = {k: v for k, v in args.items() if v not in (0, "", None)}
        if not args.keys() & {"orders_id", "orders_products_id", "customer_id", "customer_email", "from_date", "to_date"}:
            raise GraphQLError("orders needs orders_id or a date range", extensions={"code": "BAD_USER_INPUT"})
        rows = sorted(self.orders.values(), key=lambda o: -o["orders_id"])
        if "orders_id" in args:
            kind = args.get("order_type")
            test = {"gt": lambda i: i > args["orders_id"], "lt": lambda i: i < args["orders_id"]}.get(
                kind, lambda i: i == args["orders_id"])
            rows = [o for o in rows if test(o["orders_id"])]
        if "customer_id" in args:
            rows = [o for o in rows if o["user_id"] == args["customer_id"]]
        low, high = _bound(args.get("from_date"), False), _bound(args.get("to_date"), True)
        rows = [o for o in rows if (low is None or o["order_last_modified_date"] >= low)
                and (high is None or o["order_last_modified_date"] <= high)]
        return _page([self._with_customer(o) for o in rows], args.get("limit"), args.get("offset"), "orders", "totalOrders", "orders")

    def customers_query(self, info, **args):
        args = {k: v for k, v in args.items() if v not in (0, "", None)}
        rows = sorted(self.customers.values(), key=lambda c: -c["userid"])
        if "email" in args:
            rows = [c for c in rows if c["customers_email_address"].casefold() == args["email"].casefold()]
        low, high = _bound(args.get("from_date"), False), _bound(args.get("to_date"), True)
        if low or high:
            if args.get("date_type", "registration") != "registration":
                rows = []  # nobody logs in to the fake
            rows = [c for c in rows if (low is None or c["customers_register_date"] >= low)
                    and (high is None or c["customers_register_date"] <= high)]
        return _page(rows, args.get("limit"), args.get("offset"), "customers", "totalCustomers", "customers")

    def status_query(self, info, **args):
        return _page(self.statuses, args.get("limit"), args.get("offset"), "orderStatus", "totalOrderStatus", "orderStatus")

    # -- mutations ----------------------------------------------------------------------------------
    def update_order_status(self, info, input, type, orders_id=None, orders_products_id=None):
        if type != "order":
            raise GraphQLError("product statuses are not modelled by the fake", extensions={"code": "FAKE_UNSUPPORTED"})
        order = self.orders.get(orders_id or 0)
        if order is None:
            return {"id": orders_id, "message": "Order not found", "result": False}
        title = input.get("order_status")
        status = next((s for s in self.statuses if s["process_status_title"] == title and s["status_type"] == "order"), None)
        if status is None:
            return {"id": orders_id, "message": f"Invalid order status {title!r}", "result": False}
        notify = int(input.get("notify") or 0)
        self.touch(orders_id, order_status=title, orders_status_id=status["process_status_id"])
        self.history[orders_id].append({"status": title, "comment": input.get("comment"), "notify": notify})
        if notify:
            self.emails.append((orders_id, title))
        return {"id": orders_id, "message": "Order status updated", "result": True}

    def set_customer(self, info, input, customer_id=None):
        fields = {"first_name": "customers_first_name", "last_name": "customers_last_name", "email": "customers_email_address",
                  "phone_no": "customers_telephone", "company_name": "customers_company", "external_ref": "external_ref"}
        if not customer_id:
            customer_id = self.add_customer(input.get("first_name") or "", input.get("last_name") or "", input.get("email"))
        customer = self.customers.get(customer_id)
        if customer is None:
            return {"id": customer_id, "message": "Customer not found", "result": False, "external_ref": None}
        email = input.get("email")
        if email and any(c["customers_email_address"].casefold() == email.casefold() and cid != customer_id
                         for cid, c in self.customers.items()):
            return {"id": customer_id, "message": "Email already exists", "result": False, "external_ref": customer["external_ref"]}
        for key, column in fields.items():
            if key in input:
                customer[column] = input[key]
        self.fake.set_customer_calls.append((customer_id, dict(input)))
        return {"id": customer_id, "message": "Customer saved", "result": True, "external_ref": customer["external_ref"]}


class Root:
    """The GraphQL root value: each root field is a method taking (info, **arguments)."""

    def __init__(self, store: Store):
        self.orders = store.orders_query
        self.customers = store.customers_query
        self.orderStatus = store.status_query
        self.updateOrderStatus = store.update_order_status
        self.setCustomer = store.set_customer
