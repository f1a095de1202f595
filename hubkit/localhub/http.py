"""HTTP plumbing of the local Hub: error answers, request bodies with limits, ranges, safe headers."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import yaml

from hubkit.localhub.errors import BadRequest, TooLarge

READ_CHUNK = 1024 * 1024
_UNSAFE_HEADER = re.compile(r"[^\x20-\x7e]")


class Reply(Exception):
    """An HTTP error answer, raised anywhere in a handler and sent by the dispatcher."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        summary: str | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, headers or {}
        self.summary = summary or message  # the X-Error-Message header


class Drop(Exception):
    """Close the connection without answering (an injected network failure)."""


class Interrupted(Exception):
    """An injected fault stopped reading an upload part-way."""


def header_value(text: str, limit: int = 300) -> str:
    """`text` safe as an HTTP header value: printable ASCII only (no CR/LF), at most `limit` characters."""
    return _UNSAFE_HEADER.sub("?", text)[:limit]


class Body:
    """The request body, read at most once, as bytes or as a stream (Content-Length or chunked).

    ``limit`` caps it: an announced length over the limit is refused (:class:`TooLarge`) before a
    byte is read, a chunked body is cut off when it passes the limit. ``Expect: 100-continue`` is
    answered only when the body is actually read, so a refused request never invites its body.
    """

    def __init__(
        self,
        handler: Any,
        limit: int,
        on_bytes: Callable[[int], None] | None = None,
        pace: tuple[float, float] | None = None,
    ):
        self._handler = handler
        self._rfile = handler.rfile
        lengths = handler.headers.get_all("Content-Length") or []
        if len(set(lengths)) > 1:
            raise BadRequest("conflicting Content-Length headers")
        length = lengths[0] if lengths else None
        self._chunked = "chunked" in handler.headers.get("Transfer-Encoding", "").lower()
        try:
            self.length = int(length) if length is not None and not self._chunked else None
        except ValueError:
            raise BadRequest(f"Content-Length {header_value(length or '', 40)!r} is not a number") from None
        if self.length is not None and self.length < 0:
            raise BadRequest("Content-Length must not be negative")
        self.limit = limit
        self._pace = pace  # (grace seconds, minimum bytes per second)
        self._on_bytes = on_bytes
        self._stream: Iterator[bytes] | None = None
        self.done = not self._chunked and not self.length

    def check_announced(self) -> None:
        """Refuse a body whose announced length is over the limit, before reading it."""
        if self.length is not None and self.length > self.limit:
            raise TooLarge(f"request body of {self.length} bytes is over this server's limit of {self.limit}")

    def chunks(self) -> Iterator[bytes]:
        """The body as a stream; resumable, so :meth:`drain` can finish what a consumer left."""
        if self._stream is None:
            self.check_announced()
            self._handler.continue_if_expected()
            raw = self._read_chunked() if self._chunked else self._read_length(self.length or 0)
            self._stream = self._count(raw)
        return self._stream

    def read(self) -> bytes:
        return b"".join(self.chunks())

    def drain(self) -> None:
        for _ in self.chunks():
            pass

    def _count(self, raw: Iterator[bytes]) -> Iterator[bytes]:
        total, start = 0, time.monotonic()
        for chunk in raw:
            total += len(chunk)
            if total > self.limit:
                raise TooLarge(f"request body passed this server's limit of {self.limit} bytes; cut off")
            if self._pace is not None and time.monotonic() - start > self._pace[0] + total / self._pace[1]:
                raise TimeoutError("request body arrives too slowly; connection closed")
            if self._on_bytes is not None:
                self._on_bytes(len(chunk))
            yield chunk
        self.done = True

    def _read_length(self, remaining: int) -> Iterator[bytes]:
        while remaining > 0:
            chunk = self._rfile.read(min(READ_CHUNK, remaining))
            if not chunk:
                raise ConnectionError("client closed the connection mid-body")
            remaining -= len(chunk)
            yield chunk

    def _read_chunked(self) -> Iterator[bytes]:
        while True:
            line = self._rfile.readline(1024).split(b";")[0].strip()
            try:
                size = int(line or b"0", 16)
            except ValueError:
                raise BadRequest("malformed chunked request body") from None
            if size == 0:
                while self._rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return
            yield from self._read_length(size)
            self._rfile.readline(8)  # CRLF after each chunk


def fail_after(chunks: Iterator[bytes], limit: int) -> Iterator[bytes]:
    """Pass ``limit`` bytes through, then raise :class:`Interrupted` (leaving ``chunks`` resumable)."""
    passed = 0
    for chunk in chunks:
        if passed + len(chunk) > limit:
            if limit > passed:
                yield chunk[: limit - passed]
            raise Interrupted(f"injected fault: upload interrupted after {limit} bytes")
        passed += len(chunk)
        yield chunk


def truthy(query: dict[str, list[str]], name: str) -> bool:
    return (query.get(name) or ["false"])[0].lower() in ("1", "true", "yes")


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``(start, length)`` for a single ``bytes=`` range; None means "send it all"; raises on 416."""
    if not header or not header.startswith("bytes=") or "," in header:
        return None
    first, _, last = header[len("bytes=") :].strip().partition("-")
    try:
        if first == "":
            start = max(size - int(last), 0)
            end = size - 1
        else:
            start = int(first)
            end = min(int(last), size - 1) if last else size - 1
    except ValueError:
        return None
    if start >= size or end < start:
        raise Reply(
            416,
            f"range {header_value(header, 60)} not satisfiable for {size} bytes",
            headers={"Content-Range": f"bytes */{size}"},
        )
    return start, end - start + 1


def front_matter(text: str) -> dict[str, Any] | None:
    """The YAML header of a model/dataset card, or None when it has none; raises yaml.YAMLError."""
    if not text.startswith("---"):
        return None
    end = text.find("\n---", 3)
    if end < 0:
        return None
    data = yaml.safe_load(text[3:end])
    return data if isinstance(data, dict) else None
