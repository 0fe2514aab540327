"""The simulator's record reads, what the sync side asks for: `GET /crm/v8/{Module}/{id}`,
`?ids=` and the listing (fields, If-Modified-Since, sorting, `page` up to 2,000 records, then
`page_token`), with Zoho's 204 and 304 answers; and `put_record`, a CRM user's edit."""
from __future__ import annotations

import base64
import uuid

from .messages import Response, error
from .times import parse_time, zoho_time

MODULES = ("Contacts", "Deals", "Accounts")
MAX_PER_PAGE = 200
PAGE_LIMIT = 2000  # records reachable with `page`; beyond this Zoho wants `page_token`


def install(sim) -> None:
    sim._page_tokens = {}  # token -> (module, query state)

    def put_record(module: str, record_id: str, **fields) -> dict:
        """Create or edit a record as a CRM user would: Modified_Time is the simulator's now."""
        with sim.lock:
            record = sim.records.setdefault(module, {}).setdefault(str(record_id), {"id": str(record_id)})
            record["Modified_Time"] = zoho_time(sim.now())  # a test may still set its own below
            record.update(fields)
            return dict(record)

    def records_of(module: str) -> list[dict]:
        """A copy of the module's records, the newest first (what a CRM user's list view shows)."""
        with sim.lock:
            rows = [dict(r) for r in sim.records.get(module, {}).values()]
        return sorted(rows, key=lambda r: int(r["id"]), reverse=True)

    sim.put_record = put_record
    sim.records_of = records_of

    def select(record: dict, fields) -> dict:
        if not fields:
            return dict(record)
        return {k: record.get(k) for k in ["id", *fields]}

    def read_request(req):
        """(Zoho's refusal or None, the module, the fields asked for) of a read."""
        module = req.match.group("module")
        fields = [f for f in req.query.get("fields", "").split(",") if f]
        problem = sim.check_auth(req)
        if problem is None and sim.api_down:
            problem = error(503, "INTERNAL_ERROR", "service unavailable")
        if problem is None and module not in MODULES:
            problem = error(400, "INVALID_MODULE", "the module name given seems to be invalid", {})
        return problem, module, fields

    @sim.route("GET", r"/crm/v8/(?P<module>[A-Za-z_]+)/(?P<record_id>[0-9]+)", name="record_get")
    def record_get(req):
        problem, module, fields = read_request(req)
        if problem:
            return problem
        with sim.lock:
            record = sim.records.get(module, {}).get(req.match.group("record_id"))
            record = None if record is None else select(record, fields)
        if record is None:
            return Response(204)
        return Response(200, {"data": [record]})

    @sim.route("GET", r"/crm/v8/(?P<module>[A-Za-z_]+)", name="records_list")
    def records_list(req):
        problem, module, fields = read_request(req)
        if problem:
            return problem
        if "ids" in req.query:
            ids = [i for i in req.query["ids"].split(",") if i]
            if len(ids) > 100:
                return error(400, "LIMIT_EXCEEDED", "at most 100 ids", {"param": "ids", "limit": 100})
            with sim.lock:
                found = [select(sim.records.get(module, {})[i], fields) for i in ids if i in sim.records.get(module, {})]
            if not found:
                return Response(204)
            return Response(200, {"data": found, "info": {"per_page": len(found), "count": len(found), "page": 1, "more_records": False}})
        if not fields:
            return error(400, "REQUIRED_PARAM_MISSING", "One of the expected parameter is missing", {"param": "fields"})
        try:
            per_page = int(req.query.get("per_page", MAX_PER_PAGE))
        except ValueError:
            return error(400, "INVALID_DATA", "invalid data", {"param": "per_page"})
        if not 1 <= per_page <= MAX_PER_PAGE:
            return error(400, "INVALID_DATA", "invalid data", {"param": "per_page", "maximum": MAX_PER_PAGE})
        since = None
        if "if-modified-since" in req.headers:
            since = parse_time(req.headers["if-modified-since"])
            if since is None:
                return error(400, "INVALID_DATA", "invalid data", {"header": "If-Modified-Since"})
        sort_by = req.query.get("sort_by", "id")
        if sort_by not in ("id", "Created_Time", "Modified_Time"):
            return error(400, "INVALID_DATA", "invalid data", {"param": "sort_by"})
        descending = req.query.get("sort_order", "desc") == "desc"

        if "page_token" in req.query:
            if "page" in req.query:
                return error(400, "INVALID_DATA", "page and page_token cannot be given together", {"param": "page"})
            with sim.lock:
                state = sim._page_tokens.get(req.query["page_token"])
            if state is None or state["module"] != module:
                return error(400, "INVALID_DATA", "the page_token is invalid or expired", {"param": "page_token"})
            offset = state["offset"]
        else:
            try:
                page = int(req.query.get("page", 1))
            except ValueError:
                return error(400, "INVALID_DATA", "invalid data", {"param": "page"})
            if page < 1:
                return error(400, "INVALID_DATA", "invalid data", {"param": "page"})
            offset = (page - 1) * per_page
            if offset >= PAGE_LIMIT:
                return error(400, "DISCRETE_PAGINATION_LIMIT_EXCEEDED",
                              "cannot fetch more than 2000 records with page; use page_token", {"limit": PAGE_LIMIT})

        with sim.lock:
            rows = [
                dict(r) for r in sim.records.get(module, {}).values()
                if since is None or (parse_time(r.get("Modified_Time", "")) or 0) > since
            ]

        def key(r):
            if sort_by == "id":
                return (int(r["id"]),)
            return (parse_time(r.get(sort_by) or "") or 0, int(r["id"]))

        if since is not None and not rows:
            return Response(304)  # as Zoho: nothing modified since then (its SDKs' NOT_MODIFIED_STATUS_CODE)
        rows.sort(key=key, reverse=descending)
        chunk = rows[offset:offset + per_page]
        if not chunk:
            return Response(204)
        more = offset + per_page < len(rows)
        info = {"per_page": per_page, "count": len(chunk), "sort_by": sort_by,
                "sort_order": "desc" if descending else "asc", "more_records": more,
                "next_page_token": None, "previous_page_token": None, "page_token_expiry": None}
        if "page_token" not in req.query:
            info["page"] = offset // per_page + 1
        # Past the page limit, Zoho hands out a token for the next page instead of page numbers.
        if more and (offset + per_page >= PAGE_LIMIT or "page_token" in req.query):
            token = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            with sim.lock:
                sim._page_tokens[token] = {"module": module, "offset": offset + per_page}
            info["next_page_token"] = token
            info["page_token_expiry"] = zoho_time(sim.now() + 86400)
        return Response(200, {"data": [select(r, fields) for r in chunk], "info": info})
