"""Rules every backend applies to changes from Zoho: an `ops_id` links a Contact only with the
customer's e-mail, and an e-mail (the store login) is written only with GATEWAY_WRITE_BACK_EMAIL=1
(docs/security.md, "Zoho cannot take over a store account"); and the words a delivery's reason uses."""
from __future__ import annotations

from .port import Applied

EMAIL_NOT_WRITTEN = ("the e-mail was not written (GATEWAY_WRITE_BACK_EMAIL=0: a customer's e-mail is their store login, "
                     "changed in OnPrintShop only)")


def same_email(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and a.strip().casefold() == b.strip().casefold()


def ops_id_link_refusal(update, found_by: str | None, customer_email: str | None, ops_id: int) -> Applied | None:
    """A Contact found only by the `ops_id` Zoho sent is linked only when its e-mail is the customer's."""
    if found_by != "ops_id":
        return None
    given = update.fields.get("email")
    if same_email(given, customer_email):
        return None
    why = ("it sends no e-mail to compare" if given is None
           else f"its e-mail {given} is not the customer's")
    return Applied("conflict", f"Zoho Contact {update.zoho_id} names OnPrintShop customer {ops_id} (ops_id), but {why}; "
                   "it was not linked", ops_id=None, parameter="ops_id")


def writable_fields(fields: dict, current_email: str | None, write_email: bool) -> tuple[dict, list[str]]:
    """The Contact's fields to write, and notes on what is left out (the e-mail, unless allowed)."""
    if "email" not in fields or write_email:
        return dict(fields), []
    kept = {name: value for name, value in fields.items() if name != "email"}
    return kept, [] if same_email(fields["email"], current_email) else [EMAIL_NOT_WRITTEN]


def not_found(update) -> Applied:
    """No OnPrintShop record for this Zoho record, saying how it was looked for."""
    how = "the gateway's links or the ops_id sent" + (" or the e-mail" if update.module == "Contacts" else "")
    return Applied("not_found", f"no OnPrintShop record for Zoho {update.module[:-1]} {update.zoho_id} (looked up by {how})")


def linked_elsewhere(update, links, table_key: str) -> Applied | None:
    """The conflict when the `ops_id` Zoho sent is linked to another Zoho record (None when it is
    linked to none, or to this one); `links.zoho_id_for` reads the gateway's links."""
    other = links.zoho_id_for(update.module, update.ops_id)
    if other is None or other == update.zoho_id:
        return None
    return Applied("conflict", f"OnPrintShop {table_key} id {update.ops_id} is already linked to Zoho record {other}, "
                   f"not {update.zoho_id}", parameter="ops_id")
