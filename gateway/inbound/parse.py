"""Validating a Zoho delivery's parameters (pure): `validate(...)` makes an `Update` or raises
RequestError (422) naming the parameter at fault (docs/inbound.md, "Webhook deliveries")."""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import time
import unicodedata
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from ..errors import RequestError
from ..ops.mapping import Mapping, storable
from ..timezones import read_wall_clock

MODULES = ("Contacts", "Deals")

# Parameters of each webhook endpoint → (reference table, reference column) they are written to.
CONTACT_FIELDS = {
    "email": ("customers", "customers_email_address"),
    "first_name": ("customers", "customers_firstname"),
    "last_name": ("customers", "customers_lastname"),
    "phone": ("customers", "customers_telephone"),
}
DEAL_FIELDS = {
    "stage": ("orders_status", "orders_status_name"),
    "payment_status": ("orders", "payment_status"),
}
NULLABLE = {"phone"}
PAYMENT_STATUSES = ("Paid", "Unpaid")

# Clock skew, nothing more: a time further ahead would make later deliveries "stale" until then.
MAX_FUTURE_SECONDS = 10 * 60
EARLIEST = dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc).timestamp()
clock = time.time  # the time of receipt; tests set it

# Every pattern is used with fullmatch: `$` also matches before a final newline, so "123\n"
# would pass for an id of its own.
_ZOHO_ID = re.compile(r"[0-9A-Za-z_-]{1,64}")
_OPS_ID = re.compile(r"[0-9]{1,18}")
_EPOCH_MS = re.compile(r"[0-9]{11,14}")
_EMAIL_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_EMAIL_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
# Dates with day and month first and an optional time: 27/11/2026 14:05, 27.11.2026 2:05 PM,
# 11-27-2026 14:05:09. Which of the two leading numbers is the day is GATEWAY_ZOHO_DATE_ORDER's say.
_NUMERIC_DATE = re.compile(
    r"(?P<a>\d{1,2})[/.-](?P<b>\d{1,2})[/.-](?P<y>\d{4})"
    r"(?:[ T,]+(?P<H>\d{1,2}):(?P<M>\d{2})(?::(?P<S>\d{2}))?\s*(?P<ampm>[AaPp][Mm])?)?"
)
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")  # a prefix: fromisoformat checks the rest
# Parameters that are record ids: exact or refused. A JSON number with a fraction or an exponent
# is a float, and a float keeps about 16 digits: 5.725767000003000064e18 is 5725767000003000320.
ID_PARAMETERS = ("id", "ops_id")


@dataclass(frozen=True)
class Update:
    """One validated change from Zoho to one record."""

    module: str                      # 'Contacts' | 'Deals'
    zoho_id: str
    modified_time: float             # epoch seconds, UTC
    fields: dict = field(default_factory=dict)
    ops_id: int | None = None        # the OnPrintShop id Zoho holds in a custom field, if sent
    modified_time_given: bool = True  # False: the time of receipt stands in

    def fingerprint(self) -> str:
        """Same record, same time, same values → same fingerprint (duplicate detection)."""
        values = dict(self.fields)
        if values.get("stage"):
            values["stage"] = values["stage"].casefold()  # status names match case-insensitively
        payload = json.dumps(
            [self.module, self.zoho_id, round(self.modified_time, 3), sorted(values.items())],
            ensure_ascii=False, separators=(",", ":"),
        )
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()


# -- the values -----------------------------------------------------------------------------------
def validate(module: str, params: dict, mapping: Mapping, zoho_tz, *, statuses=None, refresh_statuses=None,
             now: float | None = None, date_order: str = "dmy") -> Update:
    """Check every parameter of one delivery and return the `Update`; RequestError(422) names the
    bad one. A stage must be among `statuses` (if given), else among `refresh_statuses()` read once
    afresh; `zoho_tz` and `date_order` read offset-less `modified_time`s."""
    if module not in MODULES:
        raise ValueError(f"module must be one of {MODULES}, not {module!r}")
    now = clock() if now is None else now
    tz = ZoneInfo(zoho_tz) if isinstance(zoho_tz, str) else zoho_tz

    zoho_id = _scalar(params, "id")
    if zoho_id is None or zoho_id == "":
        raise RequestError("id is required: map it to the record's Id merge field", status=422, parameter="id")
    if not _ZOHO_ID.fullmatch(zoho_id):
        raise RequestError("id must be a Zoho record id (digits, at most 64 characters)", status=422, parameter="id")

    ops_id = None
    raw_ops_id = _scalar(params, "ops_id")
    if raw_ops_id not in (None, ""):
        if not _OPS_ID.fullmatch(raw_ops_id) or int(raw_ops_id) == 0:
            raise RequestError("ops_id must be a positive whole number (the OnPrintShop id)", status=422, parameter="ops_id")
        ops_id = int(raw_ops_id)

    raw_time = _scalar(params, "modified_time")
    if raw_time in (None, ""):
        modified_time, given = now, False
    else:
        modified_time, given = parse_modified_time(raw_time, tz, date_order=date_order, now=now), True
        if modified_time > now + MAX_FUTURE_SECONDS:
            ahead = modified_time - now
            said = f"{ahead / 3600:.1f} hours" if ahead >= 3600 else f"{ahead / 60:.0f} minutes"
            raise RequestError(
                f"modified_time is {said} in the future (more than {MAX_FUTURE_SECONDS // 60} minutes is refused): "
                "GATEWAY_ZOHO_TIMEZONE is probably not the time zone of the Zoho user the workflow runs as "
                "(or the merge field is not Modified Time)",
                status=422, parameter="modified_time",
            )

    fields: dict[str, str | None] = {}
    spec = CONTACT_FIELDS if module == "Contacts" else DEAL_FIELDS
    for name, (table, column) in spec.items():
        if name not in params:
            continue
        value = _scalar(params, name)
        value = None if value is None else value.strip()
        if not value:
            if name in NULLABLE:
                fields[name] = None
                continue
            raise RequestError(f"{name} must not be empty", status=422, parameter=name)
        _check_text(name, value, mapping.length(table, column), mapping.charset)
        if name == "email":
            value = _check_email(value)
        elif name == "payment_status":
            value = _payment_status(value)
        elif name == "stage":
            value = _stage(value, mapping, statuses, refresh_statuses)
        fields[name] = value
    return Update(module=module, zoho_id=zoho_id, modified_time=modified_time, fields=fields, ops_id=ops_id,
                  modified_time_given=given)


def _scalar(params: dict, name: str) -> str | None:
    """A parameter as text; numbers are fine (JSON ids), lists and objects are not."""
    if name not in params:
        return None
    value = params[name]
    if value is None:
        return ""
    if isinstance(value, bool):
        raise RequestError(f"{name} must be text or a whole number, not true or false", status=422, parameter=name)
    if not isinstance(value, (str, int, float)):
        raise RequestError(f"{name} must be a single value, not a list or an object", status=422, parameter=name)
    if isinstance(value, float):
        if name in ID_PARAMETERS:
            raise RequestError(f"{name} must be text or a whole number without a decimal point or exponent: "
                               "a JSON number written that way loses digits", status=422, parameter=name)
        if value != value or value in (float("inf"), float("-inf")) or not value.is_integer():
            raise RequestError(f"{name} must be text or a whole number", status=422, parameter=name)
        value = int(value)
    return str(value)


def _check_text(name: str, value: str, limit: int | None, charset: str) -> None:
    for ch in value:
        category = unicodedata.category(ch)
        if category == "Cs":
            raise RequestError(f"{name} holds an invalid character (a lone surrogate)", status=422, parameter=name)
        if category == "Cc" or ch in "\u2028\u2029":
            raise RequestError(f"{name} holds a control character (U+{ord(ch):04X})", status=422, parameter=name)
    if limit is not None and len(value) > limit:
        raise RequestError(f"{name} is too long: {len(value)} characters, the column holds {limit}", status=422, parameter=name)
    if not storable(value, charset):
        raise RequestError(f"{name} holds characters the OnPrintShop column ({charset}) cannot store", status=422,
                           parameter=name)


def _check_email(value: str) -> str:
    local, at, domain = value.rpartition("@")
    problem = None
    if not at or not local or not domain:
        problem = "has no @ between a name and a domain"
    elif len(local) > 64:
        problem = "has a name part longer than 64 characters"
    elif not _EMAIL_LOCAL.fullmatch(local):
        problem = "has characters not allowed before the @"
    else:
        labels = domain.split(".")
        if len(labels) < 2 or not all(_EMAIL_LABEL.fullmatch(label) for label in labels) or labels[-1].isdigit():
            problem = "has no valid domain after the @"
    if problem:
        raise RequestError(f"email is not an e-mail address: it {problem}", status=422, parameter="email")
    return value


def _payment_status(value: str) -> str:
    for known in PAYMENT_STATUSES:
        if value.casefold() == known.casefold():
            return known
    raise RequestError("payment_status must be Paid or Unpaid", status=422, parameter="payment_status")


def _stage(value: str, mapping: Mapping, statuses, refresh_statuses=None) -> str:
    name = mapping.resolve_stage(value)
    if statuses is None:
        return name
    for known in statuses:
        if known.casefold() == name.casefold():
            return known
    if refresh_statuses is not None:
        return _stage(value, mapping, refresh_statuses())
    raise RequestError(
        f"stage {value!r} is not an OnPrintShop order status (nor an alias in the mapping)", status=422, parameter="stage"
    )


def parse_modified_time(text: str, zoho_tz, date_order: str = "dmy", now: float | None = None) -> float:
    """Every `modified_time` form a delivery may use → epoch seconds, offset-less forms read in
    `zoho_tz` and `date_order` (never swapped silently); in a repeated hour, the latest reading not
    after `now` + MAX_FUTURE_SECONDS (docs/operations.md, "Clock changes")."""
    if date_order not in ("dmy", "mdy"):
        raise ValueError(f"date_order must be 'dmy' or 'mdy', not {date_order!r}")
    text = text.strip()
    if _EPOCH_MS.fullmatch(text):
        moment = int(text) / 1000.0
    else:
        parsed = _parse_datetime(text, date_order)
        if parsed is None:
            other = "mdy" if date_order == "dmy" else "dmy"
            if _parse_datetime(text, other) is not None:
                raise RequestError(
                    f"modified_time {text!r} is not a valid date "
                    f"{'day' if date_order == 'dmy' else 'month'} first (GATEWAY_ZOHO_DATE_ORDER={date_order}); "
                    f"if the Zoho user's date format puts the {'month' if date_order == 'dmy' else 'day'} first, "
                    f"set GATEWAY_ZOHO_DATE_ORDER={other}",
                    status=422, parameter="modified_time",
                )
            shown = "DD/MM/YYYY HH:MM" if date_order == "dmy" else "MM/DD/YYYY HH:MM"
            raise RequestError(
                "modified_time is not a date and time Zoho sends (ISO 8601 with an offset, YYYY-MM-DD HH:MM:SS, "
                f"{shown}, or epoch milliseconds)",
                status=422, parameter="modified_time",
            )
        if parsed.tzinfo is None:
            now = clock() if now is None else now
            parsed = read_wall_clock(parsed, zoho_tz, now + MAX_FUTURE_SECONDS)
        moment = parsed.timestamp()
    if moment < EARLIEST:
        raise RequestError("modified_time is before the year 2000", status=422, parameter="modified_time")
    return moment


def _parse_datetime(text: str, date_order: str) -> dt.datetime | None:
    if _ISO_DATE.match(text):
        try:
            return dt.datetime.fromisoformat(text)
        except ValueError:
            return None
    match = _NUMERIC_DATE.fullmatch(text)
    if not match:
        return None
    parts = match.groupdict()
    day, month = (parts["a"], parts["b"]) if date_order == "dmy" else (parts["b"], parts["a"])
    try:
        hour = int(parts["H"] or 0)
        if parts["ampm"]:
            if not 1 <= hour <= 12:
                return None
            hour = hour % 12 + (12 if parts["ampm"].lower() == "pm" else 0)
        return dt.datetime(int(parts["y"]), int(month), int(day), hour, int(parts["M"] or 0),
                           int(parts["S"] or 0))
    except ValueError:
        # e.g. 11/27/2026 read day first: never swapped silently, the caller says which setting fits
        return None
