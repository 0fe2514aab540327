"""Reading the body of a Zoho webhook delivery: form data or a JSON object, as flat parameters."""
from __future__ import annotations

import io
import json
import urllib.parse

from werkzeug.exceptions import HTTPException
from werkzeug.formparser import parse_form_data

from ..errors import RequestError

MAX_BODY = 64 * 1024
MAX_FIELDS = 200


def read_body(content_type: str | None, raw: bytes) -> dict[str, object]:
    """The delivery's parameters from form data (urlencoded, multipart) or a JSON object
    (`application/json`, or `text/plain` holding one); anything else is 415."""
    if len(raw) > MAX_BODY:
        raise RequestError(f"the body is larger than {MAX_BODY // 1024} KiB", status=413)
    mimetype, options = _split_content_type(content_type)
    if mimetype == "application/x-www-form-urlencoded":
        return _read_urlencoded(raw)
    if mimetype == "multipart/form-data":
        return _read_multipart(content_type or "", raw, options)
    if mimetype in ("application/json", "text/json") or mimetype.endswith("+json"):
        return _read_json(raw)
    if mimetype == "text/plain" and raw.lstrip()[:1] == b"{":
        return _read_json(raw)
    raise RequestError(
        "send form data (application/x-www-form-urlencoded or multipart/form-data) or a JSON object "
        f"(application/json), not {mimetype or 'a body without a Content-Type'}",
        status=415,
    )


def _split_content_type(content_type: str | None) -> tuple[str, dict]:
    if not content_type:
        return "", {}
    parts = content_type.split(";")
    options = {}
    for part in parts[1:]:
        if "=" in part:
            key, _, value = part.partition("=")
            options[key.strip().lower()] = value.strip().strip('"')
    return parts[0].strip().lower(), options


def _read_urlencoded(raw: bytes) -> dict[str, object]:
    try:
        # Percent-encoded or raw, the bytes must be UTF-8 (a raw `ü` is what many senders put on the
        # wire); strict both times, so a Latin-1 byte is a 422, never a replacement character stored.
        text = raw.decode("utf-8")
        pairs = urllib.parse.parse_qsl(text, keep_blank_values=True, strict_parsing=False, encoding="utf-8",
                                       errors="strict", max_num_fields=MAX_FIELDS)
    except UnicodeDecodeError:
        raise RequestError("the form body is not valid UTF-8 (raw or percent-encoded)", status=422, parameter="body") from None
    except ValueError:
        raise RequestError(f"the form body has more than {MAX_FIELDS} fields", status=422, parameter="body") from None
    return _collect(pairs)


def _read_multipart(content_type: str, raw: bytes, options: dict) -> dict[str, object]:
    if not options.get("boundary"):
        raise RequestError("the multipart body has no boundary in its Content-Type", status=422, parameter="body")
    environ = {
        "REQUEST_METHOD": "POST", "CONTENT_TYPE": content_type, "CONTENT_LENGTH": str(len(raw)),
        "wsgi.input": io.BytesIO(raw),
    }
    try:
        _stream, form, _files = parse_form_data(environ, max_form_memory_size=MAX_BODY, max_form_parts=MAX_FIELDS,
                                                silent=False)
    except (HTTPException, ValueError):
        raise RequestError("the multipart body cannot be read", status=422, parameter="body") from None
    pairs = []
    for key, value in form.items(multi=True):
        if "\ufffd" in value and "\ufffd".encode() not in raw:
            raise RequestError(f"{key} is not valid UTF-8", status=422, parameter=key)
        pairs.append((key, value))
    return _collect(pairs)


class _JsonObject(dict):
    """A JSON object that keeps its pairs as sent: json.loads would keep only a repeated key's last value."""

    def __init__(self, pairs):
        super().__init__(pairs)
        self.pairs = pairs


def _read_json(raw: bytes) -> dict[str, object]:
    try:
        data = json.loads(raw.decode("utf-8-sig"), object_pairs_hook=_JsonObject)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise RequestError("the body is not valid JSON", status=422, parameter="body") from None
    if not isinstance(data, dict):
        raise RequestError("the JSON body must be an object of parameters", status=422, parameter="body")
    return _collect(data.pairs)  # a parameter given twice: 422, as in form data


def _collect(pairs) -> dict[str, object]:
    params: dict[str, object] = {}
    for key, value in pairs:
        if key in params:
            # Two values for one parameter: which one Zoho meant cannot be known, so say so.
            raise RequestError(f"{key} is given more than once", status=422, parameter=key)
        params[key] = value
    return params
