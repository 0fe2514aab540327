"""The Zoho modules the gateway syncs, and what each is called on every side."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Module:
    zoho: str      # the Zoho CRM module: "Contacts"
    setting: str   # in the admin's choice of modules to sync: "contacts"
    table: str     # the OnPrintShop reference table: "customers"
    noun: str      # one record, for people: "customer"


CONTACTS = Module("Contacts", "contacts", "customers", "customer")
DEALS = Module("Deals", "deals", "orders", "order")
MODULES = (CONTACTS, DEALS)  # Contacts first: a Deal needs its customer's Contact

NAMES = tuple(m.zoho for m in MODULES)          # ("Contacts", "Deals")
SETTINGS = tuple(m.setting for m in MODULES)    # ("contacts", "deals")
BY_ZOHO = {m.zoho: m for m in MODULES}
BY_TABLE = {m.table: m for m in MODULES}
BY_SETTING = {m.setting: m for m in MODULES}


def synced(chosen) -> tuple[Module, ...]:
    """The modules among the admin's choice (setting names); all of them when nothing is chosen."""
    wanted = {str(name).lower() for name in chosen or ()}
    return tuple(m for m in MODULES if m.setting in wanted) or MODULES
