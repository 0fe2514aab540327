"""Property: whatever is thrown at the webhooks, never a 5xx, and OnPrintShop changes only
for a valid, authenticated delivery (which is then answered 200 "applied")."""
from __future__ import annotations

import json
import time
import urllib.parse

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.inbound.conftest import Gateway

NOW_MS = int(time.time() * 1000)

texts = st.text(max_size=80)
values = {
    "id": st.one_of(st.sampled_from(["1", "5725767000003000064", "77"]), texts, st.integers()),
    "ops_id": st.one_of(st.sampled_from(["1", "2", "3", "999", "", "0"]), texts, st.integers()),
    "email": st.one_of(st.sampled_from(["ada@example.com", "new@example.org", "bad@", ""]), texts),
    "first_name": st.one_of(st.sampled_from(["Zoë", "李", "x" * 70, ""]), texts),
    "last_name": texts,
    "phone": st.one_of(st.just(""), texts),
    "stage": st.one_of(st.sampled_from(["Shipped", "closed won", "Closed Lost", "Qualification", ""]), texts),
    "payment_status": st.one_of(st.sampled_from(["Paid", "unpaid", "Refunded"]), texts),
    "modified_time": st.one_of(
        st.integers(min_value=NOW_MS - 10**9, max_value=NOW_MS).map(str),
        st.sampled_from(["2026-01-02 03:04:05", "02/01/2026 03:04", "2026-01-02T03:04:05+02:00", "13/13/2026 25:61"]),
        texts,
    ),
    "token": texts,
    "junk": st.one_of(texts, st.lists(st.integers(), max_size=3), st.none()),
}
valid_values = {
    "email": st.sampled_from(["ada@example.com", "new@example.org", "o'neil+x@example.co.uk"]),
    "first_name": st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), min_size=1, max_size=64),
    "phone": st.sampled_from(["", "+1 555 0100"]),
    "stage": st.sampled_from(["Shipped", "closed won", "Closed Lost", "printing"]),
    "payment_status": st.sampled_from(["Paid", "unpaid"]),
}
mostly_valid = st.fixed_dictionaries(
    {"id": st.sampled_from(["5725767000003000064", "77"]), "ops_id": st.sampled_from(["1", "2", "3"]),
     "modified_time": st.integers(min_value=NOW_MS - 3_000_000, max_value=NOW_MS).map(str)},
    optional={**valid_values, "junk": values["junk"]},
)
params_strategy = st.one_of(mostly_valid, st.fixed_dictionaries({}, optional=values))
content_types = st.sampled_from([
    "application/x-www-form-urlencoded", "application/json", "text/plain", "multipart/form-data; boundary=B0und",
    "multipart/form-data", "application/xml", "", "text/html; charset=utf-8", "application/json; charset=latin-1",
])
printable = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)


def encode(params: dict, content_type: str, how: str) -> bytes:
    if how == "json":
        return json.dumps(params).encode("utf-8", "surrogatepass")
    if how == "form":
        return urllib.parse.urlencode({k: str(v) for k, v in params.items()}, errors="surrogatepass").encode()
    if how == "multipart":
        parts = []
        for key, value in params.items():
            parts.append(f'--B0und\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n'
                         .encode("utf-8", "surrogatepass"))
        return b"".join(parts) + b"--B0und--\r\n"
    return b""


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(
    endpoint=st.sampled_from(["contacts", "deals"]),
    params=params_strategy,
    how_and_type=st.one_of(
        st.sampled_from([("json", "application/json"), ("form", "application/x-www-form-urlencoded"),
                         ("multipart", "multipart/form-data; boundary=B0und"), ("json", "text/plain;charset=UTF-8")]),
        st.tuples(st.sampled_from(["json", "form", "multipart", "raw"]), content_types),
    ),
    raw=st.binary(max_size=300),
    token_kind=st.sampled_from(["header", "query", "body", "wrong", "none"]),
    extra_headers=st.dictionaries(st.sampled_from(["X-Forwarded-For", "Content-Encoding", "X-Request-Id", "Accept"]),
                                  printable, max_size=2),
)
def test_never_5xx_and_only_valid_authenticated_deliveries_change_onprintshop(
        gw, endpoint, params, how_and_type, raw, token_kind, extra_headers):
    gw: Gateway = gw
    how, content_type = how_and_type
    params = dict(params)
    headers = dict(extra_headers)
    query = ""
    if token_kind == "header":
        headers["X-Webhook-Token"] = gw.secret
    elif token_kind == "query":
        query = "?token=" + urllib.parse.quote(gw.secret)
    elif token_kind == "body":
        params["token"] = gw.secret
    elif token_kind == "wrong":
        headers["X-Webhook-Token"] = "not-the-secret"
    body = raw if how == "raw" else encode(params, content_type, how)
    before = gw.snapshot()
    response = gw.client.post(f"/webhooks/zoho/{endpoint}{query}", data=body, headers=headers, content_type=content_type)
    assert response.status_code < 500, response.get_data(as_text=True)
    assert response.is_json
    changed = gw.snapshot() != before
    event(f"changed={changed} status={response.status_code}")
    if changed:
        assert token_kind in ("header", "query", "body")
        assert response.status_code == 200 and response.get_json() == {"status": "applied"}
    if token_kind in ("wrong", "none") and how != "raw":
        assert response.status_code in (401, 413)
