"""The simulator's records API: upsert (`POST /crm/v{n}/{Module}/upsert`) and update by id (`PUT`)
with Zoho's duplicate checks, mandatory fields, lookups, per-record results (200, 207, 400), 429
over the concurrency limit and the faults tests switch on (docs/simulator.md)."""
from __future__ import annotations

import itertools
import random
import re
import time
from collections import Counter

from .messages import Response
from .times import zoho_time

MANDATORY = {"Contacts": ("Last_Name",), "Deals": ("Deal_Name", "Stage")}
DEFAULT_DUPLICATE_CHECK = {"Contacts": ["Email"], "Deals": ["Deal_Name"], "Accounts": ["Account_Name"]}
LOOKUPS = {"Account_Name": "Accounts", "Contact_Name": "Contacts"}
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
MAX_RECORDS = 100


def install(sim) -> None:
    sim.fail_next = []
    sim.fault_rate = 0.0
    sim.concurrency_limit = None
    sim.retry_after = None
    sim.invalid_values = {}
    sim.upsert_calls = Counter()
    sim.upserted = Counter()
    sim.upsert_log = []
    sim.upsert_bodies = []
    sim.upsert_latency = 0.0  # seconds an upsert answer takes in all, its processing included
    sim.upsert_span = {}  # module -> [first call's arrival, last answer] (wall clock, for the benchmark)
    sim._ids = itertools.count(sim.first_id)
    sim._rng = random.Random(7)

    def new_id() -> str:
        return str(next(sim._ids))

    def add_account(name: str = "OnPrintShop customers") -> str:
        with sim.lock:
            record_id = new_id()
            sim.records["Accounts"][record_id] = {"id": record_id, "Account_Name": name, "Modified_Time": zoho_time(sim.now()),
                                                  "Created_Time": zoho_time(sim.now())}
        return record_id

    sim.add_account = add_account

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
                if lookup_id is None or str(lookup_id) not in sim.records.get(target, {}):
                    return error("INVALID_DATA", "the related id given seems to be invalid", name, index)
        if module == "Contacts" and record.get("Email") and not EMAIL_RE.match(str(record["Email"])):
            return error("INVALID_DATA", "invalid data", "Email", index)
        for (mod, name), values in sim.invalid_values.items():
            if mod == module and record.get(name) in values:
                return error("INVALID_DATA", "invalid data", name, index)
        return None

    # Duplicate-check indexes {(module, field): {folded value: id}}, so 10,000-record benchmarks
    # stay fast. Other concerns may put records straight into sim.records: when the module's
    # size differs from what was indexed, or an entry no longer matches, the index is rebuilt.
    sim._dup_index = {}
    sim._dup_indexed = {}

    def fold(name, value):
        return value.lower() if name == "Email" and isinstance(value, str) else value

    def rebuild(module: str, name: str) -> dict:
        index = {}
        for existing in sim.records[module].values():
            value = existing.get(name)
            if value not in (None, ""):
                index.setdefault(fold(name, value), existing["id"])
        sim._dup_index[(module, name)] = index
        sim._dup_indexed[(module, name)] = len(sim.records[module])
        return index

    def remember(module: str, stored: dict, names) -> None:
        for name in names:
            key = (module, name)
            if key in sim._dup_index and stored.get(name) not in (None, ""):
                sim._dup_index[key].setdefault(fold(name, stored[name]), stored["id"])
                sim._dup_indexed[key] = len(sim.records[module])

    def find_duplicate(module: str, record: dict, fields: list[str]) -> dict | None:
        for name in fields:
            value = record.get(name)
            if value in (None, ""):
                continue
            key = (module, name)
            index = sim._dup_index.get(key)
            if index is None or sim._dup_indexed.get(key) != len(sim.records[module]):
                index = rebuild(module, name)
            found_id = index.get(fold(name, value))
            existing = sim.records[module].get(found_id) if found_id else None
            if existing is not None and fold(name, existing.get(name)) != fold(name, value):
                existing = sim.records[module].get(rebuild(module, name).get(fold(name, value)))
            if existing is not None:
                return existing
        return None

    def upsert_one(module: str, record: dict, index: int, check_fields: list[str], update_only: bool = False) -> dict:
        fields = {k: v for k, v in record.items() if k != "id"}
        if "id" in record:
            existing = sim.records[module].get(str(record["id"]))
            if existing is None:
                return error("INVALID_DATA", "the id given seems to be invalid", "id", index)
        elif update_only:
            return error("MANDATORY_NOT_FOUND", "required field not found", "id", index)
        else:
            existing = find_duplicate(module, fields, check_fields)
        problem = validate(module, fields, index, inserting=existing is None)
        if problem:
            return problem
        now = zoho_time(sim.now())
        if existing is None:
            record_id = new_id()
            stored = {"id": record_id, "Created_Time": now, **fields, "Modified_Time": now}
            sim.records[module][record_id] = stored
            action = "insert"
        else:
            existing.update(fields)
            existing["Modified_Time"] = now
            stored = existing
            action = "update"
        remember(module, stored, check_fields)
        sim.upserted[module] += 1
        return {
            "code": "SUCCESS",
            "details": {"Modified_Time": now, "Modified_By": {"name": "Gateway", "id": "1"}, "Created_Time": stored.get("Created_Time", now),
                        "id": stored["id"], "Created_By": {"name": "Gateway", "id": "1"}},
            "message": "record updated" if action == "update" else "record added",
            "status": "success",
            "action": action,
            "duplicate_field": None,
        }

    @sim.route("POST", r"/crm/v\d+/(?P<module>\w+)/upsert", name="upsert")
    def upsert(req, update_only: bool = False):
        started = time.perf_counter()
        try:
            return upsert_now(req, started, update_only)
        finally:
            rest = sim.upsert_latency - (time.perf_counter() - started)
            if rest > 0:
                time.sleep(rest)

    @sim.route("PUT", r"/crm/v\d+/(?P<module>\w+)", name="update")
    def update(req):
        """Update records by their `id` (Zoho's update call: an upsert that never inserts)."""
        return upsert(req, update_only=True)

    def upsert_now(req, started, update_only):
        denied = sim.check_auth(req)
        if denied:
            return denied
        module = req.match.group("module")
        with sim.lock:
            sim.upsert_calls[module] += 1
            in_flight = sim.in_flight
            scripted = sim.fail_next.pop(0) if sim.fail_next else None
            storm = sim.fault_rate and sim._rng.random() < sim.fault_rate
        if sim.concurrency_limit is not None and in_flight > sim.concurrency_limit:
            sim.calls["429 TOO_MANY_REQUESTS"] += 1
            headers = {} if sim.retry_after is None else {"Retry-After": str(sim.retry_after)}
            return Response(429, {"code": "TOO_MANY_REQUESTS", "details": {}, "message": "too many requests", "status": "error"}, headers)
        if scripted is not None:
            status, headers = scripted if isinstance(scripted, tuple) else (scripted, {})
            sim.calls[f"scripted {status}"] += 1
            code = "TOO_MANY_REQUESTS" if status == 429 else "INTERNAL_ERROR"
            return Response(status, {"code": code, "details": {}, "message": "scripted failure", "status": "error"}, headers)
        if storm:
            sim.calls["500 storm"] += 1
            return Response(500, {"code": "INTERNAL_ERROR", "details": {}, "message": "internal error", "status": "error"})
        if module not in sim.records or module == "Accounts":
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
        with sim.lock:
            sim.upsert_bodies.append((module, body))
            results = []
            for index, record in enumerate(data):
                result = upsert_one(module, record, index, check_fields, update_only)
                results.append(result)
                sim.upsert_log.append((module, dict(record), result["code"]))
            span = sim.upsert_span.setdefault(module, [time.time() - sim.latency, 0.0])
            span[1] = time.time() + max(0.0, sim.upsert_latency - (time.perf_counter() - started))
        ok = sum(1 for r in results if r["status"] == "success")
        status = 200 if ok == len(results) else 207 if ok else 400
        return Response(status, {"data": results})
