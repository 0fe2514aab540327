"""One call to the simulator as its handlers see it (`Request`) and answer it (`Response`),
whichever transport carried it: the loopback server of the tests or the development blueprint."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from urllib.parse import parse_qs


@dataclass
class Request:
    method: str
    path: str
    query: dict
    headers: dict  # lower-case names
    body: bytes
    match: re.Match | None = None

    @property
    def form(self) -> dict:
        parsed = parse_qs(self.body.decode("utf-8"), keep_blank_values=True)
        return {k: v[-1] for k, v in parsed.items()}

    @property
    def params(self) -> dict:
        """Query and form parameters together (Zoho's token endpoint takes either)."""
        merged = dict(self.query)
        if self.body and "json" not in self.headers.get("content-type", ""):
            merged.update(self.form)
        return merged

    def json(self):
        return json.loads(self.body or b"null")


def last_values(query_string: str) -> dict:
    """A query string as {name: its last value}, blanks kept (as Zoho reads parameters)."""
    return {k: v[-1] for k, v in parse_qs(query_string, keep_blank_values=True).items()}


@dataclass
class Response:
    status: int = 200
    body: object = None
    headers: dict = field(default_factory=dict)

    def wire(self) -> tuple[bytes, list[tuple[str, str]]]:
        """The bytes and headers to send. 204 and 304 have no body and no Content-Length: a 304's
        would describe the representation not sent; clients know the message ends with the headers."""
        bodiless = self.status in (204, 304)
        payload = b"" if self.body is None or bodiless else json.dumps(self.body).encode()
        headers = [("Content-Type", "application/json;charset=UTF-8")] if payload else []
        headers += [(key, str(value)) for key, value in self.headers.items()]
        if not bodiless:
            headers.append(("Content-Length", str(len(payload))))
        return payload, headers


def error(status: int, code: str, message: str, details: dict | None = None, headers: dict | None = None) -> Response:
    """Zoho's error body: {"code", "details", "message", "status": "error"}."""
    return Response(status, {"code": code, "details": details or {}, "message": message, "status": "error"}, headers or {})
