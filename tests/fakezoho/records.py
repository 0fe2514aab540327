"""The fake Zoho's records API: `POST /crm/v{n}/{Module}/upsert` as ZOHO_NOTES describes it.

- Up to 100 records a call; each is updated by its `id` when given, else matched by the
  `duplicate_check_fields` in order (default Email for Contacts, Deal_Name for Deals; Email
  case-insensitive), else inserted. Inserts need the mandatory fields (Last_Name; Deal_Name and
  Stage). Lookups (`Account_Name`, `Contact_Name`) must name existing records, as in Zoho.
- Every record gets its own result in order; the answer is 200 when all succeed, 207 when
  some fail, 400 when all fail.
- `fake.upsert_latency`: the time an upsert answer takes in all, its processing included
  (the benchmark's "Zoho at 300 ms"; `fake.latency` delays every call before processing).
- Faults the tests switch on: `fake.fail_next` (a list of statuses or (status, headers)
  answered to the next upserts), `fake.fault_rate` (fraction answered 500), `fake.concurrency_limit`
  (429 TOO_MANY_REQUESTS past that many API calls in flight, with `Retry-After:
  fake.retry_after` when that is not None), `fake.invalid_values` {(module, field): {values}}
  answered INVALID_DATA, and 401 INVALID_TOKEN for an expired token (`fake.check_auth`).
- Counters: `fake.upsert_calls[module]`, `fake.upserted[module]` (records accepted),
  `fake.upsert_log` (module, record as received, result code) in arrival order,
  `fake.upsert_span[module]` (first arrival, last answer: wall-clock seconds), and the
  server's own `fake.calls` / `fake.max_in_flight`.

`fake.records` holds the stored records ({"id", "Modified_Time", "Created_Time", fields…});
`fake.add_account(name)` makes the Account every synced record is attached to.
"""
from __future__ import annotations

import datetime as dt
import itertools
import random
import re
import time
from collections import Counter

from .server import Response

MANDATORY = {"Contacts": ("Last_Name",), "Deals": ("Deal_Name", "Stage")}
DEFAULT_DUPLICATE_CHECK = {"Contacts": ["Email"], "Deals": ["Deal_Name"], "Accounts": ["Account_Name"]}
LOOKUPS = {"Account_Name": "Accounts", "Contact_Name": "Contacts"}
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
MAX_RECORDS = 100


def install(fake) -> None:
    fake.fail_next = []
    fake.fault_rate = 0.0
    fake.concurrency_limit = None
    fake.retry_after = None
    fake.invalid_values = {}
    fake.upsert_calls = Counter()
    fake.upserted = Counter()
    fake.upsert_log = []
    fake.upsert_bodies = []
    fake.upsert_latency = 0.0  # seconds an upsert answer takes in all, its processing included
    fake.upsert_span = {}  # module -> [first call's arrival, last answer] (wall clock, for the benchmark)
    fake._ids = itertools.count(5725767000000000001)
    fake._rng = random.Random(7)

    def new_id() -> str:
        return str(next(fake._ids))

    def zoho_time() -> str:
        return dt.datetime.fromtimestamp(fake.now(), dt.timezone.utc).replace(microsecond=0).isoformat()

    def add_account(name: str = "OnPrintShop customers") -> str:
        with fake.lock:
            record_id = new_id()
            fake.records["Accounts"][record_id] = {"id": record_id, "Account_Name": name, "Modified_Time": zoho_time(),
                                                   "Created_Time": zoho_time()}
        return record_id

    fake.add_account = add_account

    def error(code: str, message: str, api_name: str | None = None, index: int | None = None) -> dict:
        details = {}
        if api_name:
            details = {"api_name": api_name, "json_path": f"$.data[{index}].{api_name}"}
        return {"code": code, "details": details, "message": message, "status": "error"}

    def validate(module: str, record: dict, index: int, inserting: bool) -> dict | None:
        if inserting:
            for name in MANDATORY.get(module, ()):
                if record.get(name) in (None, ""):
                    return error("MANDATORY_NOT_FOUND", "required field not found", name, index)
        for name, target in LOOKUPS.items():
            if name in record:
                value = record[name]
                lookup_id = value.get("id") if isinstance(value, dict) else None
                if lookup_id is None or str(lookup_id) not in fake.records.get(target, {}):
                    return error("INVALID_DATA", "the related id given seems to be invalid", name, index)
        if module == "Contacts" and record.get("Email") and not EMAIL_RE.match(str(record["Email"])):
            return error("INVALID_DATA", "invalid data", "Email", index)
        for (mod, name), values in fake.invalid_values.items():
            if mod == module and record.get(name) in values:
                return error("INVALID_DATA", "invalid data", name, index)
        return None

    # Duplicate-check indexes {(module, field): {folded value: id}}, so 10,000-record benchmarks
    # stay fast. Other concerns may put records straight into fake.records: when the module's
    # size differs from what was indexed, or an entry no longer matches, the index is rebuilt.
    fake._dup_index = {}
    fake._dup_indexed = {}

    def fold(name, value):
        return value.lower() if name == "Email" and isinstance(value, str) else value

    def rebuild(module: str, name: str) -> dict:
        index = {}
        for existing in fake.records[module].values():
            value = existing.get(name)
            if value not in (None, ""):
                index.setdefault(fold(name, value), existing["id"])
        fake._dup_index[(module, name)] = index
        fake._dup_indexed[(module, name)] = len(fake.records[module])
        return index

    def remember(module: str, stored: dict, names) -> None:
        for name in names:
            key = (module, name)
            if key in fake._dup_index and stored.get(name) not in (None, ""):
                fake._dup_index[key].setdefault(fold(name, stored[name]), stored["id"])
                fake._dup_indexed[key] = len(fake.records[module])

    def find_duplicate(module: str, record: dict, fields: list[str]) -> dict | None:
        for name in fields:
            value = record.get(name)
            if value in (None, ""):
                continue
            key = (module, name)
            index = fake._dup_index.get(key)
            if index is None or fake._dup_indexed.get(key) != len(fake.records[module]):
                index = rebuild(module, name)
            found_id = index.get(fold(name, value))
            existing = fake.records[module].get(found_id) if found_id else None
            if existing is not None and fold(name, existing.get(name)) != fold(name, value):
                existing = fake.records[module].get(rebuild(module, name).get(fold(name, value)))
            if existing is not None:
                return existing
        return None

    def upsert_one(module: str, record: dict, index: int, check_fields: list[str]) -> dict:
        fields = {k: v for k, v in record.items() if k != "id"}
        if "id" in record:
            existing = fake.records[module].get(str(record["id"]))
            if existing is None:
                return error("INVALID_DATA", "the id given seems to be invalid", "id", index)
        else:
            existing = find_duplicate(module, fields, check_fields)
        problem = validate(module, fields, index, inserting=existing is None)
        if problem:
            return problem
        now = zoho_time()
        if existing is None:
            record_id = new_id()
            stored = {"id": record_id, "Created_Time": now, **fields, "Modified_Time": now}
            fake.records[module][record_id] = stored
            action = "insert"
        else:
            existing.update(fields)
            existing["Modified_Time"] = now
            stored = existing
            action = "update"
        remember(module, stored, check_fields)
        fake.upserted[module] += 1
        return {
            "code": "SUCCESS",
            "details": {"Modified_Time": now, "Modified_By": {"name": "Gateway", "id": "1"}, "Created_Time": stored["Created_Time"],
                        "id": stored["id"], "Created_By": {"name": "Gateway", "id": "1"}},
            "message": "record updated" if action == "update" else "record added",
            "status": "success",
            "action": action,
            "duplicate_field": None,
        }

    @fake.route("POST", r"/crm/v\d+/(?P<module>\w+)/upsert", name="upsert")
    def upsert(req):
        started = time.perf_counter()
        try:
            return upsert_now(req, started)
        finally:
            rest = fake.upsert_latency - (time.perf_counter() - started)
            if rest > 0:
                time.sleep(rest)

    def upsert_now(req, started=None):
        denied = fake.check_auth(req)
        if denied:
            return denied
        module = req.match.group("module")
        with fake.lock:
            fake.upsert_calls[module] += 1
            in_flight = fake.in_flight
            scripted = fake.fail_next.pop(0) if fake.fail_next else None
            storm = fake.fault_rate and fake._rng.random() < fake.fault_rate
        if fake.concurrency_limit is not None and in_flight > fake.concurrency_limit:
            fake.calls["429 TOO_MANY_REQUESTS"] += 1
            headers = {} if fake.retry_after is None else {"Retry-After": str(fake.retry_after)}
            return Response(429, {"code": "TOO_MANY_REQUESTS", "details": {}, "message": "too many requests", "status": "error"}, headers)
        if scripted is not None:
            status, headers = scripted if isinstance(scripted, tuple) else (scripted, {})
            fake.calls[f"scripted {status}"] += 1
            code = "TOO_MANY_REQUESTS" if status == 429 else "INTERNAL_ERROR"
            return Response(status, {"code": code, "details": {}, "message": "scripted failure", "status": "error"}, headers)
        if storm:
            fake.calls["500 storm"] += 1
            return Response(500, {"code": "INTERNAL_ERROR", "details": {}, "message": "internal error", "status": "error"})
        if module not in fake.records or module == "Accounts":
            return Response(400, {"code": "INVALID_MODULE", "details": {}, "message": "the module name given seems to be invalid", "status": "error"})
        try:
            body = req.json()
        except ValueError:
            return Response(400, {"code": "INVALID_DATA", "details": {}, "message": "body is not JSON", "status": "error"})
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list) or not data:
            return Response(400, {"code": "INVALID_DATA", "details": {"api_name": "data"}, "message": "data is missing", "status": "error"})
        if len(data) > MAX_RECORDS:
            return Response(400, {"code": "LIMIT_EXCEEDED", "details": {"limit": MAX_RECORDS}, "message": "more than 100 records", "status": "error"})
        check_fields = body.get("duplicate_check_fields") or DEFAULT_DUPLICATE_CHECK[module]
        with fake.lock:
            fake.upsert_bodies.append((module, body))
            results = []
            for index, record in enumerate(data):
                result = upsert_one(module, record, index, check_fields)
                results.append(result)
                fake.upsert_log.append((module, dict(record), result["code"]))
            span = fake.upsert_span.setdefault(module, [time.time() - fake.latency, 0.0])
            span[1] = time.time() + max(0.0, fake.upsert_latency - (time.perf_counter() - started))
        ok = sum(1 for r in results if r["status"] == "success")
        status = 200 if ok == len(results) else 207 if ok else 400
        return Response(status, {"data": results})
