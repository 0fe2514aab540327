"""Logging people can use: text or JSON lines, request ids; never a secret, a token or a body
(secret query parameters are masked)."""
from __future__ import annotations

import json
import logging
import re
import sys
import time
import uuid
from urllib.parse import parse_qsl, urlencode

# Query parameters whose values are secrets or one-time credentials: the webhook `token`, and the
# OAuth `code` and `state` of /admin/zoho/callback. Matched after percent-decoding, as Werkzeug reads them.
SENSITIVE_PARAMETERS = {"token", "code", "state"}
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


MAX_NESTING = 3  # nested queries (`next=/x?code=…`) looked into; a value nested deeper is masked whole


def mask_query(query: str, depth: int = 0) -> str:
    """The query string as logged: sensitive values masked, also inside nested URLs (`next=`)."""
    pairs = []
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key.strip().lower() in SENSITIVE_PARAMETERS:
            value = "***"
        elif "?" in value or "=" in value:
            if depth >= MAX_NESTING:
                value = "***"  # too deep to look into: it may hide a credential
            else:
                head, _, nested = value.partition("?")
                value = f"{head}?{mask_query(nested, depth + 1)}" if nested else mask_query(value, depth + 1)
        pairs.append((key, value))
    return urlencode(pairs, safe="/*:,")


def request_id_from(header: str | None) -> str:
    """A caller's X-Request-Id when it is a plain id (it goes into log lines), else a new one."""
    if header and _REQUEST_ID.fullmatch(header):
        return header
    return uuid.uuid4().hex[:16]


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("request_id", "method", "path", "status", "duration_ms", "remote"):
            if hasattr(record, key):
                payload[key] = getattr(record, key)
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload, ensure_ascii=False)


def configure(fmt: str) -> None:
    """Configure the 'gateway' logger once per process (idempotent)."""
    logger = logging.getLogger("gateway")
    handler = next((h for h in logger.handlers if getattr(h, "_gateway", False)), None)
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        handler._gateway = True
        logger.addHandler(handler)
        logger.propagate = False
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)
