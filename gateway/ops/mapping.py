"""The mapping between the gateway and one OnPrintShop database: names, lengths, aliases, charset,
Zoho custom fields. Defaults are the reference schema; `instance/mapping.toml` overrides them,
validated once at start-up (docs/onprintshop.md). Code always uses the reference names."""
from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field

from ..errors import ConfigError

# Reference tables and their columns, in schema order.
REFERENCE_COLUMNS: dict[str, tuple[str, ...]] = {
    "customers": (
        "customers_id", "customers_firstname", "customers_lastname", "customers_email_address",
        "customers_telephone", "customers_company", "date_account_created", "last_modified",
    ),
    "orders_status": ("orders_status_id", "orders_status_name"),
    "orders": (
        "orders_id", "customers_id", "orders_status_id", "payment_status", "order_total", "currency",
        "date_purchased", "last_modified",
    ),
    "orders_status_history": (
        "orders_status_history_id", "orders_id", "orders_status_id", "date_added", "customer_notified", "comments",
    ),
}

# Lengths of the text columns a Zoho delivery writes or matches (characters, as VARCHAR(n) counts).
REFERENCE_LENGTHS: dict[str, dict[str, int]] = {
    "customers": {
        "customers_firstname": 64, "customers_lastname": 64, "customers_email_address": 255,
        "customers_telephone": 32, "customers_company": 128,
    },
    "orders_status": {"orders_status_name": 64},
    "orders": {"payment_status": 16, "currency": 3},
}

DEFAULT_STATUS_ALIASES = {"Closed Won": "Order Completed", "Closed Lost": "Cancelled"}

# Optional Zoho custom fields (API names), sent/read only when named.
ZOHO_FIELD_KEYS = ("contact_ops_id_field", "deal_ops_id_field", "deal_payment_status_field")

# What the columns can store: utf8mb4 holds every character; utf8mb3 ("utf8" in older MySQL)
# no 4-byte ones (emoji); latin1 only U+0000–U+00FF.
CHARSETS = ("utf8mb4", "utf8mb3", "utf8", "latin1")

TOP_LEVEL_KEYS = ("tables", "columns", "lengths", "status_aliases", "zoho", "database")

_SQL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,63}$")
_ZOHO_API_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,99}$")

MAPPING_FILE = "mapping.toml"


@dataclass(frozen=True)
class Mapping:
    """Names and rules for one OnPrintShop database (reference names → this store's names)."""

    tables: dict[str, str] = field(default_factory=lambda: {t: t for t in REFERENCE_COLUMNS})
    columns: dict[str, dict[str, str]] = field(
        default_factory=lambda: {t: {c: c for c in cols} for t, cols in REFERENCE_COLUMNS.items()}
    )
    lengths: dict[str, dict[str, int]] = field(default_factory=lambda: {t: dict(v) for t, v in REFERENCE_LENGTHS.items()})
    status_aliases: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_STATUS_ALIASES))
    zoho: dict[str, str | None] = field(default_factory=lambda: {k: None for k in ZOHO_FIELD_KEYS})
    charset: str = "utf8mb4"
    source: str = "defaults"  # where it came from, for messages

    def table(self, key: str) -> str:
        """This store's name of a reference table."""
        return self.tables[key]

    def column(self, table: str, key: str) -> str:
        """This store's name of a reference column."""
        return self.columns[table][key]

    def length(self, table: str, key: str) -> int | None:
        return self.lengths.get(table, {}).get(key)

    def resolve_stage(self, stage: str) -> str:
        """A Zoho stage → the OnPrintShop status name it stands for (aliases, case-insensitive)."""
        folded = stage.strip().casefold()
        for alias, target in self.status_aliases.items():
            if alias.casefold() == folded:
                return target
        return stage.strip()

    def zoho_field(self, key: str) -> str | None:
        """The API name of an optional Zoho custom field (None when not mapped)."""
        return self.zoho.get(key)


def load(instance_path: str | None) -> Mapping:
    """The mapping: defaults, overridden by `<instance>/mapping.toml` when it exists."""
    if not instance_path:
        return Mapping()
    path = os.path.join(instance_path, MAPPING_FILE)
    if not os.path.exists(path):
        return Mapping()
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it: {exc.strerror}") from None
    return from_dict(data, source=path)


def from_dict(data: dict, source: str = "mapping") -> Mapping:
    """Validate a parsed mapping file and merge it over the defaults; ConfigError names the bad key."""

    def fail(key: str, problem: str):
        raise ConfigError(f"{source}: {key} {problem}")

    if not isinstance(data, dict):
        fail("(top level)", "must be a table of sections")
    for key in data:
        if key not in TOP_LEVEL_KEYS:
            fail(key, f"is not a known section (known: {', '.join(TOP_LEVEL_KEYS)})")

    base = Mapping()
    tables = dict(base.tables)
    columns = {t: dict(c) for t, c in base.columns.items()}
    lengths = {t: dict(v) for t, v in base.lengths.items()}
    aliases = dict(base.status_aliases)
    zoho = dict(base.zoho)
    charset = base.charset

    def section(name: str) -> dict:
        value = data.get(name, {})
        if not isinstance(value, dict):
            fail(name, "must be a section ([" + name + "])")
        return value

    for key, value in section("tables").items():
        if key not in REFERENCE_COLUMNS:
            fail(f"tables.{key}", f"is not a reference table (one of: {', '.join(REFERENCE_COLUMNS)})")
        if not isinstance(value, str) or not _SQL_NAME.match(value):
            fail(f"tables.{key}", "must be a table name (letters, digits, _ or $; at most 64 characters)")
        tables[key] = value

    for table, cols in section("columns").items():
        if table not in REFERENCE_COLUMNS:
            fail(f"columns.{table}", f"is not a reference table (one of: {', '.join(REFERENCE_COLUMNS)})")
        if not isinstance(cols, dict):
            fail(f"columns.{table}", "must be a section ([columns." + table + "])")
        for key, value in cols.items():
            if key not in REFERENCE_COLUMNS[table]:
                fail(f"columns.{table}.{key}", f"is not a column of {table} (one of: {', '.join(REFERENCE_COLUMNS[table])})")
            if not isinstance(value, str) or not _SQL_NAME.match(value):
                fail(f"columns.{table}.{key}", "must be a column name (letters, digits, _ or $; at most 64 characters)")
            columns[table][key] = value
        names = list(columns[table].values())
        if len(set(n.lower() for n in names)) != len(names):
            fail(f"columns.{table}", "maps two reference columns to the same column")

    for table, cols in section("lengths").items():
        if table not in REFERENCE_LENGTHS:
            fail(f"lengths.{table}", f"has no text columns to size (one of: {', '.join(REFERENCE_LENGTHS)})")
        if not isinstance(cols, dict):
            fail(f"lengths.{table}", "must be a section ([lengths." + table + "])")
        for key, value in cols.items():
            if key not in REFERENCE_LENGTHS[table]:
                fail(f"lengths.{table}.{key}", f"is not a sized column of {table} (one of: {', '.join(REFERENCE_LENGTHS[table])})")
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
                fail(f"lengths.{table}.{key}", "must be a whole number of characters between 1 and 65535")
            lengths[table][key] = value

    alias_section = section("status_aliases")
    if alias_section:
        aliases = {}
    for key, value in alias_section.items():
        if not key.strip():
            fail("status_aliases", "has an empty alias")
        if not isinstance(value, str) or not value.strip():
            fail(f"status_aliases.{key!r}", "must name an OnPrintShop status (a non-empty string)")
        aliases[key.strip()] = value.strip()

    for key, value in section("zoho").items():
        if key not in ZOHO_FIELD_KEYS:
            fail(f"zoho.{key}", f"is not a known option (one of: {', '.join(ZOHO_FIELD_KEYS)})")
        if value == "":
            zoho[key] = None
            continue
        if not isinstance(value, str) or not _ZOHO_API_NAME.match(value):
            fail(f"zoho.{key}", "must be a Zoho field API name (letters, digits and _; e.g. OPS_Customer_Id)")
        zoho[key] = value

    for key, value in section("database").items():
        if key != "charset":
            fail(f"database.{key}", "is not a known option (known: charset)")
        if value not in CHARSETS:
            fail("database.charset", f"must be one of {', '.join(CHARSETS)}")
        charset = value

    return Mapping(tables=tables, columns=columns, lengths=lengths, status_aliases=aliases, zoho=zoho,
                   charset=charset, source=source)


def storable(text: str, charset: str) -> bool:
    """Can a column in `charset` store `text` exactly?"""
    if charset == "latin1":
        return all(ord(ch) <= 0xFF for ch in text)
    if charset in ("utf8mb3", "utf8"):
        return all(ord(ch) <= 0xFFFF for ch in text)
    return True
