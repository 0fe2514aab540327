"""Reading a Zoho delivery: body forms and every value rule of docs/inbound.md (pure functions)."""
from __future__ import annotations

import datetime as dt
import json

import pytest

from gateway.errors import RequestError
from gateway.inbound.body import MAX_BODY, read_body
from gateway.inbound.parse import parse_modified_time, validate
from gateway.ops.mapping import Mapping

NOW = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.timezone.utc).timestamp()
M = Mapping()


def v(module, **params):
    return validate(module, params, M, "UTC", now=NOW)


def refused(module, status=422, **params) -> RequestError:
    with pytest.raises(RequestError) as info:
        v(module, **params)
    assert info.value.status == status
    return info.value


def test_contact_fields_only_those_present():
    update = v("Contacts", id="5725767000003000064", email="ada@example.com", first_name=" Ada ", other="ignored")
    assert update.zoho_id == "5725767000003000064"
    assert update.fields == {"email": "ada@example.com", "first_name": "Ada"}
    assert update.ops_id is None


def test_empty_phone_clears_but_empty_required_is_422():
    assert v("Contacts", id="1", phone="").fields == {"phone": None}
    assert refused("Contacts", id="1", last_name="  ").parameter == "last_name"
    assert refused("Contacts", id="1", email="").parameter == "email"
    assert refused("Deals", id="1", stage="").parameter == "stage"


@pytest.mark.parametrize("email", ["no-at-sign", "a@b", "a b@example.com", "@example.com", "a@-x.com", "a@@x.com",
                                   "a..b@example.com", "x" * 65 + "@example.com", "a@example.123"])
def test_bad_emails(email):
    err = refused("Contacts", id="1", email=email)
    assert err.parameter == "email" and "e-mail" in err.message


def test_lengths_fit_the_columns():
    assert v("Contacts", id="1", first_name="x" * 64).fields["first_name"] == "x" * 64
    err = refused("Contacts", id="1", first_name="x" * 65)
    assert err.parameter == "first_name" and "65" in err.message and "64" in err.message
    assert refused("Contacts", id="1", phone="1" * 33).parameter == "phone"


def test_characters_the_column_cannot_store():
    assert refused("Contacts", id="1", first_name="A\x00da").parameter == "first_name"
    assert refused("Contacts", id="1", last_name="Love\nlace").parameter == "last_name"
    assert refused("Contacts", id="1", last_name="x\ud800").parameter == "last_name"
    # utf8mb4 stores emoji and every script; a utf8mb3 store cannot
    assert v("Contacts", id="1", first_name="Zoë 😀 李").fields["first_name"] == "Zoë 😀 李"
    mb3 = Mapping(charset="utf8mb3")
    with pytest.raises(RequestError) as info:
        validate("Contacts", {"id": "1", "first_name": "😀"}, mb3, "UTC", now=NOW)
    assert info.value.parameter == "first_name" and "utf8mb3" in info.value.message


def test_sql_looking_text_is_just_text():
    text = "Robert'); DROP TABLE customers;--"
    assert v("Contacts", id="1", last_name=text).fields["last_name"] == text


def test_stage_aliases_and_known_statuses():
    statuses = ["Pending", "Printing", "Order Completed", "Cancelled"]
    check = lambda stage: validate("Deals", {"id": "9", "stage": stage}, M, "UTC", statuses=statuses, now=NOW)
    assert check("printing").fields["stage"] == "Printing"
    assert check("Closed Won").fields["stage"] == "Order Completed"
    assert check("closed lost").fields["stage"] == "Cancelled"
    with pytest.raises(RequestError) as info:
        check("Qualification")
    assert info.value.parameter == "stage" and info.value.status == 422
    assert v("Deals", id="9", stage="closed won").fields["stage"] == "Order Completed"  # statuses unknown: checked at apply


def test_payment_status():
    assert v("Deals", id="9", payment_status="paid").fields["payment_status"] == "Paid"
    assert v("Deals", id="9", payment_status="Unpaid").fields["payment_status"] == "Unpaid"
    assert refused("Deals", id="9", payment_status="Refunded").parameter == "payment_status"


def test_ids():
    assert refused("Deals", stage="Pending").parameter == "id"
    assert refused("Deals", id="1 OR 1=1").parameter == "id"
    assert v("Deals", id=5725767000003000064, ops_id=42).ops_id == 42  # JSON numbers are fine
    assert refused("Deals", id="1", ops_id="-3").parameter == "ops_id"
    assert refused("Deals", id="1", ops_id="0").parameter == "ops_id"
    assert refused("Deals", id=["1"]).parameter == "id"
    assert refused("Deals", id={"a": 1}).parameter == "id"
    assert refused("Deals", id=True).parameter == "id"


@pytest.mark.parametrize("text, tz, expected", [
    ("2026-11-27T10:15:30+01:00", "UTC", "2026-11-27T09:15:30+00:00"),
    ("2026-11-27T10:15:30Z", "Asia/Kolkata", "2026-11-27T10:15:30+00:00"),
    ("2026-11-27 10:15:30", "UTC", "2026-11-27T10:15:30+00:00"),
    ("2026-11-27 10:15:30", "Europe/Berlin", "2026-11-27T09:15:30+00:00"),
    ("2026-07-27 10:15:30", "Europe/Berlin", "2026-07-27T08:15:30+00:00"),
    ("27/11/2026 10:15", "UTC", "2026-11-27T10:15:00+00:00"),
    ("27/11/2026 10:15", "America/New_York", "2026-11-27T15:15:00+00:00"),
    ("27.11.2026 10:15:30", "UTC", "2026-11-27T10:15:30+00:00"),
    ("27/11/2026 02:15 PM", "UTC", "2026-11-27T14:15:00+00:00"),
    ("27/11/2026 12:05 AM", "UTC", "2026-11-27T00:05:00+00:00"),
    ("1795774530000", "Europe/Berlin", "2026-11-27T10:15:30+00:00"),
])
def test_modified_time_forms(text, tz, expected):
    from zoneinfo import ZoneInfo

    got = dt.datetime.fromtimestamp(parse_modified_time(text, ZoneInfo(tz)), dt.timezone.utc)
    assert got.isoformat() == expected


@pytest.mark.parametrize("text", ["yesterday", "11/27/2026 10:15", "2026-13-01 00:00:00", "31/02/2026 10:00",
                                  "27/11/2026 13:00 PM", "1999-12-31T23:59:59Z", "12345"])
def test_bad_modified_time(text):
    assert refused("Deals", id="1", modified_time=text).parameter == "modified_time"


def test_modified_time_absent_is_time_of_receipt_and_future_is_refused():
    update = v("Deals", id="1", stage="Pending")
    assert update.modified_time == NOW and update.modified_time_given is False
    assert refused("Deals", id="1", modified_time="2026-11-29T12:00:00Z").parameter == "modified_time"
    assert v("Deals", id="1", modified_time=1795774530000).modified_time == 1795774530.0


def test_fingerprint_same_values_same_time():
    a = v("Deals", id="1", stage="Pending", modified_time="2026-11-27 10:00:00")
    b = v("Deals", id="1", stage="pending", modified_time="27/11/2026 10:00")
    c = v("Deals", id="1", stage="Printing", modified_time="2026-11-27 10:00:00")
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()


# -- bodies -------------------------------------------------------------------------------------
def test_form_json_and_text_plain_bodies():
    assert read_body("application/x-www-form-urlencoded", b"id=1&first_name=Zo%C3%AB&token=x") == {
        "id": "1", "first_name": "Zoë", "token": "x"}
    assert read_body("application/json; charset=utf-8", json.dumps({"id": 1}).encode()) == {"id": 1}
    assert read_body("text/plain;charset=UTF-8", b' {"id": "2"}') == {"id": "2"}
    body = (b"--XyZ\r\nContent-Disposition: form-data; name=\"id\"\r\n\r\n77\r\n"
            b"--XyZ\r\nContent-Disposition: form-data; name=\"last_name\"\r\n\r\n\xc3\x98rsted\r\n--XyZ--\r\n")
    assert read_body("multipart/form-data; boundary=XyZ", body) == {"id": "77", "last_name": "Ørsted"}


@pytest.mark.parametrize("ctype, body, status", [
    ("application/xml", b"<id>1</id>", 415),
    (None, b"id=1", 415),
    ("text/plain", b"id=1", 415),
    ("application/json", b"[1, 2]", 422),
    ("application/json", b"{not json", 422),
    ("application/json", b"\xff\xfe", 422),
    ("application/x-www-form-urlencoded", b"id=%ff", 422),
    ("application/x-www-form-urlencoded", b"id=1&id=2", 422),
    ("multipart/form-data", b"x", 422),
    ("application/json", b"{" + b" " * MAX_BODY + b"}", 413),
])
def test_bad_bodies(ctype, body, status):
    with pytest.raises(RequestError) as info:
        read_body(ctype, body)
    assert info.value.status == status


# -- the order of day and month (GATEWAY_ZOHO_DATE_ORDER) -------------------------------------------
@pytest.mark.parametrize("text, order, expected", [
    ("11/05/2026 09:05 AM", "dmy", "2026-05-11T09:05:00+00:00"),
    ("11/05/2026 09:05 AM", "mdy", "2026-11-05T09:05:00+00:00"),
    ("11/27/2026 10:15", "mdy", "2026-11-27T10:15:00+00:00"),
    ("11.27.2026 02:15:30 PM", "mdy", "2026-11-27T14:15:30+00:00"),
    ("2026-11-05 09:05:00", "mdy", "2026-11-05T09:05:00+00:00"),  # year-first forms are never ambiguous
])
def test_date_order_decides_day_and_month(text, order, expected):
    got = dt.datetime.fromtimestamp(parse_modified_time(text, dt.timezone.utc, date_order=order), dt.timezone.utc)
    assert got.isoformat() == expected


def test_a_date_that_does_not_fit_the_order_is_refused_and_names_the_setting():
    with pytest.raises(RequestError) as info:
        validate("Deals", {"id": "1", "modified_time": "11/27/2026 10:15"}, M, "UTC", now=NOW, date_order="dmy")
    assert info.value.parameter == "modified_time"
    assert "GATEWAY_ZOHO_DATE_ORDER" in info.value.message and "mdy" in info.value.message
    with pytest.raises(RequestError) as info:
        validate("Deals", {"id": "1", "modified_time": "27/11/2026 10:15"}, M, "UTC", now=NOW, date_order="mdy")
    assert info.value.parameter == "modified_time"
    assert "GATEWAY_ZOHO_DATE_ORDER" in info.value.message and "dmy" in info.value.message


def test_validate_reads_month_first_when_told():
    update = validate("Deals", {"id": "1", "modified_time": "11/05/2026 09:05 AM"}, M, "UTC", now=NOW,
                      date_order="mdy")
    assert update.modified_time == dt.datetime(2026, 11, 5, 9, 5, tzinfo=dt.timezone.utc).timestamp()


# -- a modified_time ahead of now ------------------------------------------------------------------
def test_modified_time_more_than_ten_minutes_ahead_is_refused_naming_the_time_zone_setting():
    ahead = dt.datetime.fromtimestamp(NOW, dt.timezone.utc)
    assert v("Deals", id="1", modified_time=(ahead + dt.timedelta(minutes=9)).isoformat()).modified_time == NOW + 540
    error = refused("Deals", id="1", modified_time=(ahead + dt.timedelta(minutes=11)).isoformat())
    assert error.parameter == "modified_time" and "GATEWAY_ZOHO_TIMEZONE" in error.message
    # the usual cause: a Zoho user in Kolkata, GATEWAY_ZOHO_TIMEZONE left at UTC (5½ hours ahead)
    kolkata_wall_clock = ahead.astimezone(dt.timezone(dt.timedelta(hours=5, minutes=30))).strftime("%Y-%m-%d %H:%M:%S")
    assert refused("Deals", id="1", modified_time=kolkata_wall_clock).parameter == "modified_time"
    assert validate("Deals", {"id": "1", "modified_time": kolkata_wall_clock}, M, "Asia/Kolkata",
                    now=NOW).modified_time == NOW


def test_raw_utf8_form_body_is_read_and_invalid_bytes_are_refused():
    assert read_body("application/x-www-form-urlencoded", "id=900&first_name=Müller&last_name=Ørsted+Ñ".encode()) == {
        "id": "900", "first_name": "Müller", "last_name": "Ørsted Ñ"}
    assert read_body("application/x-www-form-urlencoded; charset=UTF-8", "id=1&x=%C3%BC€".encode()) == {
        "id": "1", "x": "ü€"}
    for bad in (b"id=1&first_name=M\xfcller", b"id=1&first_name=\xc3", b"id=1&x=%ff"):
        with pytest.raises(RequestError) as info:
            read_body("application/x-www-form-urlencoded", bad)
        assert info.value.status == 422 and info.value.parameter == "body" and "UTF-8" in info.value.message


# -- a parameter given twice in a JSON body ----------------------------------------------------------
@pytest.mark.parametrize("ctype", ["application/json", "text/plain"])
def test_a_json_key_given_twice_is_refused_as_in_form_data(ctype):
    for body in (b'{"id": "1", "stage": "Shipped", "stage": "Cancelled"}', b'{"id": "1", "id": "2"}'):
        with pytest.raises(RequestError) as info:
            read_body(ctype, body)
        name = "stage" if b"stage" in body else "id"
        assert (info.value.status, info.value.parameter, info.value.message) == (422, name, f"{name} is given more than once")
    # a repeat inside a nested value is no parameter of ours: only the top level counts
    assert read_body("application/json", b'{"id": "1", "junk": {"a": 1, "a": 2}}')["id"] == "1"


# -- ids: the whole value, exactly -----------------------------------------------------------------
@pytest.mark.parametrize("name, value", [
    ("id", "5725767000003000064\n"), ("id", "77\n"), ("ops_id", "42\n"),
])
def test_an_id_with_a_trailing_newline_is_refused(name, value):
    params = {"id": "1", name: value}
    assert refused("Deals", **params).parameter == name


@pytest.mark.parametrize("name, value", [
    ("id", 5.725767000003000064e18), ("id", 77.0), ("ops_id", 42.0), ("ops_id", 4.2e1), ("ops_id", True), ("id", False),
])
def test_a_json_float_or_boolean_id_is_refused_naming_it(name, value):
    error = refused("Deals", **{"id": "1", name: value})
    assert error.parameter == name and name in error.message


def test_a_json_number_id_as_zoho_sends_it_keeps_every_digit():
    params = read_body("application/json", b'{"id": 5725767000003000064, "ops_id": 42}')
    update = validate("Deals", params, M, "UTC", now=NOW)
    assert update.zoho_id == "5725767000003000064" and update.ops_id == 42
    params = read_body("application/json", b'{"id": 5.725767000003000064e18}')
    with pytest.raises(RequestError) as info:
        validate("Deals", params, M, "UTC", now=NOW)
    assert info.value.parameter == "id"


# -- a stage just added in OnPrintShop -------------------------------------------------------------
def test_an_unknown_stage_asks_for_fresh_statuses_once_before_refusing():
    calls = []

    def fresh():
        calls.append(1)
        return ["Pending", "Proofing"]

    check = lambda stage: validate("Deals", {"id": "9", "stage": stage}, M, "UTC", statuses=["Pending"],
                                   refresh_statuses=fresh, now=NOW)
    assert check("pending").fields["stage"] == "Pending" and calls == []  # known: nothing asked
    assert check("proofing").fields["stage"] == "Proofing" and calls == [1]
    with pytest.raises(RequestError) as info:
        check("Qualification")
    assert info.value.parameter == "stage" and calls == [1, 1]
    # fresh statuses that cannot be read (None): the stage is checked when applied, as without any
    assert validate("Deals", {"id": "9", "stage": "Proofing"}, M, "UTC", statuses=["Pending"],
                    refresh_statuses=lambda: None, now=NOW).fields["stage"] == "Proofing"


# -- the repeated hour when clocks go back (America/New_York, 1 November 2026, 02:00 EDT → 01:00 EST) --
NY_FIRST_0150 = dt.datetime(2026, 11, 1, 5, 50, tzinfo=dt.timezone.utc).timestamp()   # 01:50 EDT
NY_SECOND_0110 = dt.datetime(2026, 11, 1, 6, 10, tzinfo=dt.timezone.utc).timestamp()  # 01:10 EST


@pytest.mark.parametrize("text, received, expected", [
    # received in the first pass of the hour: the second reading is still ahead, so the first
    ("2026-11-01 01:50:00", NY_FIRST_0150 + 5, NY_FIRST_0150),
    ("01/11/2026 01:50", NY_FIRST_0150 + 5, NY_FIRST_0150),
    # received in the second pass: the latest reading not after the receipt
    ("2026-11-01 01:10:00", NY_SECOND_0110 + 5, NY_SECOND_0110),
    ("01/11/2026 01:10 AM", NY_SECOND_0110 + 5, NY_SECOND_0110),
    ("2026-11-01 01:50:00", NY_SECOND_0110 + 5, NY_FIRST_0150),  # 01:50 EST is still 40 minutes ahead
    # within the 10 minutes' tolerance for clock skew, the second reading is taken
    ("2026-11-01 01:15:00", NY_SECOND_0110 - 1, NY_SECOND_0110 + 300),
    # an offset says which one it is: never second-guessed
    ("2026-11-01T01:10:00-04:00", NY_SECOND_0110 + 5, NY_SECOND_0110 - 3600),
    # a time in the spring-forward gap (02:30 does not exist on 8 March) reads as before: 03:30 EDT
    ("2026-03-08 02:30:00", NY_SECOND_0110, dt.datetime(2026, 3, 8, 7, 30, tzinfo=dt.timezone.utc).timestamp()),
])
def test_a_time_in_the_repeated_hour_is_the_latest_reading_not_after_receipt(text, received, expected):
    update = validate("Deals", {"id": "1", "modified_time": text}, M, "America/New_York", now=received)
    assert update.modified_time == expected
