"""Where one HTTP/1.1 request ends, found as its bytes arrive; and the buffer gunicorn reads it from.

Only framing is decided here: gunicorn's parser still checks every byte, and a disagreement closes.
"""
from __future__ import annotations

import tempfile

MAX_HEAD = 64 * 1024  # request line and headers; a longer head is answered 431
MAX_LINE = 8190 + 2  # a chunk-size or trailer line with its CRLF (gunicorn's limit_request_field_size)
MAX_TRAILERS = 64 * 1024
SPOOL_IN_MEMORY = 64 * 1024  # bodies up to this stay in memory, larger ones go to a temporary file


class RequestReader:
    """Takes the bytes of one request from what is fed to it, and says when it is complete.

    Done but not `reusable`: framing unclear or refused; what was read is served, then the connection closes."""

    def __init__(self, max_body: int):
        self.max_body = max_body
        self.head = bytearray()
        self.body = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)
        self.body_bytes = 0
        self.head_done = False
        self.done = False
        self.reusable = True
        self.too_large = False
        self.expect_continue = False
        self._remaining = 0  # body or chunk-data bytes still to come
        self._chunk_state = None  # None (Content-Length framing), "size", "data", "crlf" or "trailer"
        self._line = bytearray()
        self._trailer_bytes = 0

    @property
    def started(self) -> bool:
        return bool(self.head) or self.head_done

    def feed(self, data: bytes) -> int:
        """Take the bytes of `data` that belong to this request; returns how many were taken."""
        taken = 0 if self.head_done else self._feed_head(data)
        while taken < len(data) and self.head_done and not self.done:
            count = self._feed_body(data, taken)
            self._store(memoryview(data)[taken:taken + count])
            taken += count
        return taken

    def close(self) -> None:
        self.body.close()

    # -- the head ------------------------------------------------------------------------------
    def _feed_head(self, data: bytes) -> int:
        searched = max(0, len(self.head) - 3)
        self.head += data
        end = self.head.find(b"\r\n\r\n", searched)
        if end < 0:
            if _bare_lf(self.head, searched):
                self._unframed()  # gunicorn refuses it (400) at once; no reason to wait for more
            elif len(self.head) > MAX_HEAD:
                self.too_large = self.done = True
            return len(data)
        end += 4
        surplus = len(self.head) - end
        del self.head[end:]
        self.head_done = True
        self._frame()
        return len(data) - surplus

    def _frame(self) -> None:
        head = bytes(self.head)
        if _bare_lf(head, 0):
            return self._unframed()
        lines = head[:-4].decode("latin-1").split("\r\n")
        if lines[0] == "":
            lines.pop(0)  # one empty line before the request line is ignored (RFC 9112 section 2.2)
        version = lines[0].rsplit(" ", 1)[-1] if lines else ""
        lengths, codings, expect = [], [], False
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.upper()
            if line[:1] in (" ", "\t") or name.strip(" \t") != name:
                return self._unframed()  # folded lines, spaces around a name: refused by gunicorn anyway
            if name == "CONTENT-LENGTH":
                lengths.append(value.strip(" \t"))
            elif name == "TRANSFER-ENCODING":
                codings += [v.strip(" \t").lower() for v in value.split(",")]
            elif name == "EXPECT":
                expect = value.strip(" \t").lower() == "100-continue"
        if codings:
            if lengths or codings[-1] != "chunked":
                return self._unframed()
            self._chunk_state = "size"
        elif lengths:
            length = lengths[0]
            if len(lengths) > 1 or not (length.isascii() and length.isdigit()) or int(length) > self.max_body:
                return self._unframed()  # gunicorn answers 400, or the app 413 without reading the body
            self._remaining = int(length)
            self.done = self._remaining == 0
        else:
            self.done = True
        # RFC 9110 section 10.1.1: never a 100 (Continue) to an HTTP/1.0 client
        self.expect_continue = expect and version == "HTTP/1.1" and not self.done

    def _unframed(self) -> None:
        self.reusable = False
        self.head_done = self.done = True

    # -- the body ------------------------------------------------------------------------------
    def _store(self, piece) -> None:
        self.body.write(piece)
        self.body_bytes += len(piece)
        if self.body_bytes > self.max_body:
            self.reusable, self.done = False, True

    def _feed_body(self, data: bytes, start: int) -> int:
        """How many bytes from `start` on belong to the body, advancing the chunked framing."""
        state = self._chunk_state
        if state is None or state == "data":
            count = min(len(data) - start, self._remaining)
            self._remaining -= count
            if self._remaining == 0:
                if state is None:
                    self.done = True
                else:
                    self._chunk_state = "crlf"
            return count
        if state == "crlf":
            count = min(len(data) - start, 2 - len(self._line))
            self._line += data[start:start + count]
            if len(self._line) == 2:
                if self._line != b"\r\n":
                    self._unframed()
                self._line.clear()
                self._chunk_state = "size"
            return count
        return self._feed_line(data, start)

    def _feed_line(self, data: bytes, start: int) -> int:
        """A chunk-size line or a trailer line, which may arrive a byte at a time."""
        room = MAX_LINE - len(self._line)
        newline = data.find(b"\n", start, start + room)
        if newline < 0:
            count = min(len(data) - start, room)
            self._line += data[start:start + count]
            if len(self._line) >= MAX_LINE:
                self._unframed()
            return count
        line = bytes(self._line) + data[start:newline + 1]
        self._line.clear()
        if not line.endswith(b"\r\n"):
            self._unframed()
        elif self._chunk_state == "trailer":
            self._trailer_bytes += len(line)
            if line == b"\r\n":
                self.done = True
            elif self._trailer_bytes > MAX_TRAILERS:
                self._unframed()
        else:
            size, ext = line[:-2].split(b";", 1) if b";" in line else (line[:-2], None)
            size = size.rstrip(b" \t") if ext is not None else size
            if not size or size.strip(b"0123456789abcdefABCDEF"):
                self._unframed()
            else:
                self._remaining = int(size, 16)
                self._chunk_state = "data" if self._remaining else "trailer"
        return newline + 1 - start


def _bare_lf(buf, start: int) -> bool:
    """Whether a line feed not preceded by a carriage return is in `buf` from `start` on."""
    i = buf.find(b"\n", start)
    while i >= 0:
        if i == 0 or buf[i - 1] != 0x0D:
            return True
        i = buf.find(b"\n", i + 1)
    return False


class Source:
    """What gunicorn's parser reads a connection's requests from: the buffered one, never the socket."""

    def __init__(self):
        self._head = b""
        self._body = None

    def load(self, reader: RequestReader) -> None:
        self.close()
        self._head = bytes(reader.head)
        self._body = reader.body
        self._body.seek(0)

    def recv(self, size: int) -> bytes:
        if self._head:
            piece, self._head = self._head[:size], self._head[size:]
            return piece
        return self._body.read(size) if self._body is not None else b""

    def exhausted(self) -> bool:
        return not self._head and (self._body is None or not self._body.read(1))

    def close(self) -> None:
        if self._body is not None:
            self._body.close()
            self._body = None
        self._head = b""
