"""The OnPrintShop port: what inbound and outbound may ask of a store, whatever the backend.

Every failure is one of three `OpsError`s, so callers need not know the backend (docs/ops-backends.md)."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Protocol

KINDS = ("customers", "orders")


class OpsError(Exception):
    """OnPrintShop could not do what was asked; the message says why, for people."""


class OpsUnavailable(OpsError):
    """OnPrintShop cannot be reached or used now: every record waits, retried uncounted."""


class OpsNeedsMoreCalls(OpsUnavailable):
    """This change needed more API calls than were set aside for it: tried again alone with more
    (`Backend.writer(ample=True)`); it is not an outage, so other records go on."""


class OpsBusy(OpsError):
    """The record is locked in OnPrintShop (a lock wait, a deadlock): retried soon, uncounted."""


class OpsRefused(OpsError):
    """OnPrintShop refused this change of this record (a trigger, a constraint): a counted attempt."""


@dataclass(frozen=True)
class Customer:
    id: int
    first_name: str | None
    last_name: str | None
    email: str | None
    phone: str | None = None
    company: str | None = None
    last_modified: dt.datetime | None = None   # naive, the store's time zone


@dataclass(frozen=True)
class Order:
    id: int
    customer_id: int
    status_id: int | None
    status_name: str | None                    # None when the status id names no status
    payment_status: str | None
    total: Decimal | float | None
    currency: str | None
    purchased: dt.date | dt.datetime | None    # what becomes the Deal's Closing_Date
    last_modified: dt.datetime | None = None   # naive, the store's time zone


@dataclass(frozen=True)
class Status:
    id: int
    name: str


@dataclass
class Applied:
    """What became of one change from Zoho: applied, stale, not_found, conflict or invalid."""

    status: str
    message: str
    ops_id: int | None = None
    found_by: str | None = None      # 'link' | 'ops_id' | 'email': how the record was found
    written: tuple | None = None     # (kind, ops_id, last_modified) the gateway wrote, for the loop guard
    parameter: str | None = None     # the parameter at fault (conflict, invalid)
    notes: list[str] = field(default_factory=list)  # what was not applied and why


class Update(Protocol):
    """One validated change from Zoho (inbound's `parse.Update`)."""

    module: str
    zoho_id: str
    modified_time: float
    fields: dict
    ops_id: int | None


class Links(Protocol):
    """The gateway's own links, read in the caller's transaction."""

    def zoho_id_for(self, module: str, ops_id: int) -> str | None: ...


class Writer:
    """Applies changes from Zoho; made by `Backend.writer()` around the caller's transaction."""

    down: bool = False  # the store was found unreachable moments ago: do not try now

    def apply(self, update: Update, linked: int | None, links: Links) -> Applied:
        raise NotImplementedError

    def apply_batch(self, items: list[tuple[Update, int | None]], links: Links) -> list[Applied | OpsError]:
        """Apply several changes (a backend may do it in one transaction); per item its `Applied`, or the
        OpsError it met. OpsUnavailable ends the batch: every item not applied yet gets it."""
        results: list[Applied | OpsError] = []
        for update, linked in items:
            if results and isinstance(results[-1], OpsUnavailable):
                results.append(results[-1])
                continue
            try:
                results.append(self.apply(update, linked, links))
            except OpsError as exc:
                results.append(exc)
        return results


class Backend(Protocol):
    """An OnPrintShop store (today its MySQL database; docs/ops-backends.md)."""

    name: str
    mapping: object  # gateway.ops.mapping.Mapping: names, lengths, charset, aliases, custom Zoho fields
    connectable: bool  # the admin page offers "Connect to OnPrintShop" (credentials saved in the vault)

    def ping(self) -> bool: ...
    def describe(self) -> str: ...
    def readiness(self) -> tuple[str, str]: ...  # /readyz's part: ("ops_database", "ok"), ("ops_api", "not_configured")
    def report(self) -> dict: ...  # the status page's card: {"state", "rows": [(label, value)], "problem"}
    def refresh_changes(self, kind: str) -> None: ...  # before a poller round: make new changes readable by changed_since
    def status_names(self, refresh: bool = False) -> list[str] | None: ...
    def customers(self, ids) -> dict[int, Customer]: ...
    def orders(self, ids) -> dict[int, Order]: ...
    def existing_ids(self, kind: str, ids) -> list[int]: ...
    def all_ids(self, kind: str, since: dt.datetime | None = None, patient: bool = False) -> list[int]: ...  # patient: wait out 429s
    def customer_ids_of_orders(self, order_ids) -> dict[int, int]: ...
    def changed_since(self, kind: str, after, until=None, limit: int = 1000) -> list[tuple[int, dt.datetime]]: ...
    def writer(self, connect_now: bool = False, write_email: bool = False, changes: int = 1, ample: bool = False): ...
    def now_local(self) -> dt.datetime: ...
    def set_back_within(self, seconds: float) -> dt.timedelta: ...
    def to_local(self, aware: dt.datetime) -> dt.datetime: ...
    def epoch_from_local(self, naive: dt.datetime, now: float | None = None) -> float: ...
    def dispose(self) -> None: ...
