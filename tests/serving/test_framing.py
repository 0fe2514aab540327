"""Where a request ends, as the worker's event loop finds it, checked against gunicorn's own parser."""
from __future__ import annotations

import pytest
from gunicorn.config import Config
from gunicorn.http import get_parser
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.serving.framing import MAX_HEAD, RequestReader, Source

MAX = 1024 * 1024


def feed(reader: RequestReader, data: bytes, step: int | None = None) -> int:
    """Feed `data` whole, or `step` bytes at a time until the reader is done; bytes taken."""
    taken = 0
    step = step or len(data)
    while taken < len(data) and not reader.done:
        piece = data[taken:taken + step]
        count = reader.feed(piece)
        assert count <= len(piece)
        taken += count
        if count < len(piece):
            break
    return taken


def body_of(reader: RequestReader) -> bytes:
    reader.body.seek(0)
    return reader.body.read()


GET = b"GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n"


@pytest.mark.parametrize("step", [1, 3, None])
def test_a_request_without_body_ends_with_its_head_and_leaves_the_next_one(step):
    reader = RequestReader(MAX)
    assert feed(reader, GET + GET, step) == len(GET)
    assert reader.done and reader.reusable and bytes(reader.head) == GET and body_of(reader) == b""


@pytest.mark.parametrize("step", [1, 7, None])
def test_a_length_body_is_taken_to_its_last_byte(step):
    request = b"POST /w HTTP/1.1\r\nContent-Length: 11\r\n\r\nhello world"
    reader = RequestReader(MAX)
    assert feed(reader, request[:-1], step) == len(request) - 1 and not reader.done
    assert reader.feed(request[-1:] + GET) == 1
    assert reader.done and reader.reusable and body_of(reader) == b"hello world" and reader.body_bytes == 11


@pytest.mark.parametrize("step", [1, 5, None])
def test_a_chunked_body_with_extensions_and_trailers_is_taken_to_its_end(step):
    body = b"5;name=value\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nX-Trailer: yes\r\n\r\n"
    request = b"POST /w HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" + body
    reader = RequestReader(MAX)
    assert feed(reader, request + GET, step) == len(request)
    assert reader.done and reader.reusable and body_of(reader) == body


def test_the_last_chunk_alone_ends_the_body():
    reader = RequestReader(MAX)
    request = b"POST /w HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"
    assert feed(reader, request + GET, 2) == len(request) and reader.done and reader.reusable


@pytest.mark.parametrize(("head", "expected"), [
    (b"POST /w HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n", True),
    (b"POST /w HTTP/1.1\r\nExpect: 100-Continue\r\nTransfer-Encoding: chunked\r\n\r\n", True),
    (b"POST /w HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n", False),  # never to HTTP/1.0
    (b"POST /w HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 0\r\n\r\n", False),  # no body to wait for
    (b"POST /w HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 9999999\r\n\r\n", False),  # refused unread
])
def test_expect_100_continue_is_answered_only_for_a_body_that_will_be_read(head, expected):
    reader = RequestReader(MAX)
    reader.feed(head)
    assert reader.head_done and reader.expect_continue is expected


@pytest.mark.parametrize("head", [
    b"POST /w HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",  # both: gunicorn refuses it
    b"POST /w HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n",
    b"POST /w HTTP/1.1\r\nContent-Length: +3\r\n\r\n",
    b"POST /w HTTP/1.1\r\nContent-Length: \xb3\r\n\r\n",  # a superscript three is a digit to str.isdigit()
    b"POST /w HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
    b"POST /w HTTP/1.1\r\nContent-Length : 3\r\n\r\n",
    b"POST /w HTTP/1.1\r\nX-A: 1\r\n Content-Length: 3\r\n\r\n",  # a folded line
    b"POST /w HTTP/1.1\r\nContent-Length: 2000000\r\n\r\n",  # over the buffering limit: the app says 413
])
def test_unclear_or_refused_framing_hands_over_the_head_alone_and_closes_after(head):
    reader = RequestReader(MAX)
    assert reader.feed(head + b"abc") == len(head)
    assert reader.done and not reader.reusable and body_of(reader) == b""


def test_a_bare_line_feed_ends_the_head_at_once_for_gunicorn_to_refuse():
    reader = RequestReader(MAX)
    reader.feed(b"GET / HTTP/1.1\nHost: gw\n")
    assert reader.done and not reader.reusable


def test_a_head_over_64_kib_is_too_large():
    reader = RequestReader(MAX)
    reader.feed(b"GET / HTTP/1.1\r\n")
    while not reader.done:
        reader.feed(b"X-Filler: " + b"a" * 1000 + b"\r\n")
    assert reader.too_large and len(reader.head) <= MAX_HEAD + 1100


@pytest.mark.parametrize("body", [
    b"zz\r\nhello\r\n0\r\n\r\n",  # not a hex size
    b"5\r\nhelloXX0\r\n\r\n",  # no CRLF after the data
    b"5 \r\nhello\r\n0\r\n\r\n",  # a space after the size without an extension
    b"1" * 9000,  # a size line that never ends
])
def test_a_malformed_chunked_body_stops_the_reading_and_closes_after(body):
    reader = RequestReader(MAX)
    feed(reader, b"POST /w HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" + body + GET, 3)
    assert reader.done and not reader.reusable


def test_a_chunked_body_over_the_limit_stops_being_read():
    reader = RequestReader(1000)
    reader.feed(b"POST /w HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
    taken = feed(reader, b"100\r\n" + b"a" * 256 + (b"\r\n100\r\n" + b"a" * 256) * 10, 50)
    assert reader.done and not reader.reusable and 1000 < reader.body_bytes <= 1050 and taken == reader.body_bytes


def test_the_source_gives_the_head_then_the_body_then_nothing():
    reader = RequestReader(MAX)
    reader.feed(b"POST /w HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello")
    source = Source()
    source.load(reader)
    assert not source.exhausted()
    assert source.recv(10) == b"POST /w HT"
    rest = b"".join(iter(lambda: source.recv(7), b""))
    assert rest.endswith(b"\r\n\r\nhello") and source.exhausted()
    source.close()


# -- the reader and gunicorn's parser agree on every byte, however the bytes arrive ---------------
def _chunked(pieces: list[bytes], trailer: bool) -> bytes:
    out = b"".join(b"%x%s\r\n%s\r\n" % (len(p), b";ext=1" if i % 2 else b"", p) for i, p in enumerate(pieces) if p)
    return out + b"0\r\n" + (b"X-Checksum: 1\r\n" if trailer else b"") + b"\r\n"


requests = st.builds(
    lambda pieces, chunked, trailer: (b"".join(pieces), chunked, trailer),
    st.lists(st.binary(max_size=300), max_size=5), st.booleans(), st.booleans(),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(requests, min_size=1, max_size=4), st.lists(st.integers(1, 400), min_size=1, max_size=20))
def test_pipelined_requests_split_anywhere_are_framed_as_gunicorn_parses_them(specs, cuts):
    wire, bodies = b"", []
    for body, chunked, trailer in specs:
        if chunked:
            pieces = [body[i:i + 97] for i in range(0, len(body), 97)]
            wire += b"POST /w HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n" + _chunked(pieces, trailer)
        else:
            wire += b"POST /w HTTP/1.1\r\nHost: gw\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        bodies.append(body)
    source = Source()
    parser = get_parser(Config(), source, ("127.0.0.1", 1))
    offset, cut = 0, 0
    for expected in bodies:
        reader = RequestReader(MAX)
        while not reader.done:
            size = cuts[cut % len(cuts)]
            cut += 1
            taken = reader.feed(wire[offset:offset + size])
            assert taken > 0
            offset += taken
        assert reader.reusable
        source.load(reader)
        request = next(parser)
        assert request.body.read() == expected
        assert source.exhausted() and not parser.unreader.buf.getvalue()
    assert offset == len(wire)

