"""Reading a request body within a limit: 413 when it is larger, 400 when it cannot be read."""
from __future__ import annotations

import logging

from flask import request

from ..errors import RequestError

log = logging.getLogger("gateway.web")


def read_bounded(limit: int, too_large: str | None = None) -> bytes:
    """The body, at most `limit` bytes (a chunked body has no length: one byte past it is read to know)."""
    too_large = too_large or f"request body too large (at most {limit // 1024} KiB)"
    if request.content_length is not None and request.content_length > limit:
        raise RequestError(too_large, status=413)
    chunks, size = [], 0
    try:
        while size <= limit:
            chunk = request.stream.read(limit + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except Exception as exc:  # the server's own parse error (a malformed chunk) or a client gone away
        log.info("request body could not be read: %s", exc.__class__.__name__)
        raise RequestError("the request body could not be read (malformed chunked encoding, or cut short)",
                           status=400) from None
    raw = b"".join(chunks)
    if len(raw) > limit:
        raise RequestError(too_large, status=413)
    return raw
