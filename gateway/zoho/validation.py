"""Checking what the admin typed into the Zoho form (pure: no storage, no network)."""
from __future__ import annotations

import re
from urllib.parse import urlsplit

from .datacenters import UnknownDataCenter, check_code

MODULES = ("contacts", "deals")
ACCOUNT_ID_RE = re.compile(r"^[0-9]{5,30}$")
MAX_CREDENTIAL = 500


class FormError(ValueError):
    """A field of the Zoho form is wrong; the message starts with the field's name."""


def normalize_modules(values) -> tuple[str, ...]:
    chosen = []
    for value in values or ():
        name = str(value).strip().lower()
        if name not in MODULES:
            raise FormError(f"modules: {value!r} is not a module the gateway syncs; choose from {', '.join(MODULES)}")
        if name not in chosen:
            chosen.append(name)
    return tuple(name for name in MODULES if name in chosen)


def credential(field: str, value, label: str) -> str:
    value = (value or "").strip()
    if not value:
        raise FormError(f"{field}: the {label} is required")
    if len(value) > MAX_CREDENTIAL or any(ch.isspace() for ch in value):
        raise FormError(f"{field}: the {label} does not look right (copy it again from Zoho, without spaces)")
    return value


def validate_account_id(value) -> str:
    value = (value or "").strip()
    if not ACCOUNT_ID_RE.match(value):
        raise FormError(
            "account_id: the Account ID is the long number at the end of a Zoho CRM Account record's URL "
            "(open the Account in Zoho CRM: …/tab/Accounts/<Account ID>)"
        )
    return value


def validate_redirect_uri(value) -> str | None:
    value = (value or "").strip()
    if not value:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or len(value) > 500:
        raise FormError("redirect_uri: give the full URL registered with the client, e.g. https://gateway.example.com/admin/zoho/callback")
    return value


def validate_data_center(value) -> str:
    try:
        return check_code(value)
    except UnknownDataCenter as exc:
        raise FormError(f"data_center: {exc}") from None
