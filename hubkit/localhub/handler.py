"""The request handler's base: one request in, one Hub-style answer out (status codes and
``X-Error-Code`` headers, so ``huggingface_hub`` raises its usual exceptions), with who is asking.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

from hubkit.localhub.access import Identity, TokenTable, UploadTickets
from hubkit.localhub.errors import (
    BadRequest,
    Forbidden,
    LocalHubError,
    Reply,
    RepoNotFound,
    TooLarge,
    Unauthorized,
)
from hubkit.localhub.faults import Faults, Stats
from hubkit.localhub.limits import Limits
from hubkit.localhub.objects import RepoKey
from hubkit.localhub.storage import CHUNK, HubStore

logger = logging.getLogger("hubkit.localhub.server")
_URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
_NO_TOKEN = "Invalid credentials in Authorization header"  # the Hub's summary: clients report a 401
_QUERY = re.compile(r"\?[^\s\"]*")
_UNSAFE_HEADER = re.compile(r"[^\x20-\x7e]")


class Drop(Exception):
    """Close the connection without answering (an injected network failure)."""


class HubState(Protocol):
    """What a request sees of its server (a running :class:`~hubkit.localhub.server.LocalHub`)."""

    store: HubStore
    tokens: TokenTable
    uploads: UploadTickets
    limits: Limits
    faults: Faults
    stats: Stats

    @property
    def endpoint(self) -> str: ...


class Body:
    """The request body, read at most once (Content-Length or chunked), capped at ``limit`` bytes and cut
    off when slower than the server's ``min_body_rate``; ``100 Continue`` is sent only when it is read."""

    def __init__(self, handler: HandlerBase, limit: int, on_bytes: Callable[[int], None] | None = None):
        self._handler, self._rfile = handler, handler.rfile
        self.limit, self._on_bytes = limit, on_bytes
        self._stream: Iterator[bytes] | None = None
        lengths = handler.headers.get_all("Content-Length") or []
        if len(set(lengths)) > 1:
            raise BadRequest("conflicting Content-Length headers")
        self._chunked = "chunked" in handler.headers.get("Transfer-Encoding", "").lower()
        try:
            self.length = int(lengths[0]) if lengths and not self._chunked else None
        except ValueError:
            raise BadRequest(f"Content-Length {header_value(lengths[0], 40)!r} is not a number") from None
        if self.length is not None and self.length < 0:
            raise BadRequest("Content-Length must not be negative")
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
        limits, total, start = self._handler.hub.limits, 0, time.monotonic()
        for chunk in raw:
            total += len(chunk)
            if total > self.limit:
                raise TooLarge(f"request body passed this server's limit of {self.limit} bytes; cut off")
            if time.monotonic() - start > limits.io_timeout + total / limits.min_body_rate:
                raise TimeoutError("request body arrives too slowly; connection closed")
            if self._on_bytes is not None:
                self._on_bytes(len(chunk))
            yield chunk
        self.done = True

    def _read_length(self, remaining: int) -> Iterator[bytes]:
        while remaining > 0:
            chunk = self._rfile.read(min(CHUNK, remaining))
            if not chunk:
                raise ConnectionError("client closed the connection mid-body")
            remaining -= len(chunk)
            yield chunk

    def _read_chunked(self) -> Iterator[bytes]:
        while True:
            try:
                size = int(self._rfile.readline(1024).split(b";")[0].strip() or b"0", 16)
            except ValueError:
                raise BadRequest("malformed chunked request body") from None
            if size == 0:
                while self._rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return
            yield from self._read_length(size)
            self._rfile.readline(8)  # CRLF after each chunk


class HandlerBase(BaseHTTPRequestHandler):
    """Dispatch, access checks and answers shared by every route."""

    protocol_version = "HTTP/1.1"
    server_version = "hubkit-localhub/1"
    hub: HubState

    def end_headers(self) -> None:
        self.answered = True
        super().end_headers()

    def handle_expect_100(self) -> bool:
        """Defer ``100 Continue`` until the body is read (see :class:`Body`)."""
        self.expect_continue = True
        return True

    def continue_if_expected(self) -> None:
        if getattr(self, "expect_continue", False):
            self.expect_continue = False
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def log_message(self, format: str, *args: Any) -> None:
        # the request line without its query (upload URLs carry one-time tickets); never headers
        logger.debug("%s - %s", self.client_address[0], _QUERY.sub("?…", format % args))

    @property
    def store(self) -> HubStore:
        return self.hub.store

    # ---- dispatch

    def _dispatch(self) -> None:
        self.hub.stats.add(requests=1)
        url = urlsplit(self.path)
        self.query = parse_qs(url.query)
        self.answered = False
        self.body: Any = None  # stays None when the body cannot even be framed: the connection must close
        try:
            self._open_body(url.path)
            self._route([unquote(s) for s in url.path.split("/")[1:]])()
        except (Drop, ConnectionError, TimeoutError):
            self.close_connection = True
            return
        except LocalHubError as exc:
            self._answer_error(exc)
        except Exception:
            logger.exception("localhub: internal error on %s %s", self.command, url.path)
            self._answer_error(Reply(500, "internal error in hubkit localhub (see its log)"))
        if self.body is None or not self.body.done:
            self.close_connection = True  # an unread body would be parsed as the next request

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _dispatch

    def _open_body(self, path: str) -> None:
        """Frame the body, learn who asks, refuse an announced body over their limit before it is read."""
        limits = self.hub.limits
        self.body = Body(self, limits.max_body)
        self.identity = self._identify()
        if self.identity is None:
            self.body.limit = min(limits.max_body, limits.max_anonymous_body)
        if not (self.command == "PUT" and path.startswith("/_localhub/lfs/")):
            self.body.check_announced()

    def _route(self, segs: list[str]) -> Callable[[], None]:  # pragma: no cover - defined by the routes
        raise NotImplementedError

    # ---- who is asking, and may they

    def _identify(self) -> Identity | None:
        """The caller's identity; None without a token; Unauthorized for a token the server does not know."""
        auth = self.headers.get("Authorization")
        if auth is None:
            return None
        scheme, _, token = auth.strip().partition(" ")
        identity = self.hub.tokens.lookup(token.strip()) if scheme.lower() == "bearer" else None
        if identity is None:
            raise Unauthorized("hubkit localhub does not know this token; use one from its token file")
        return identity

    def require_identity(self) -> Identity:
        if self.identity is None:
            raise Unauthorized(
                "hubkit localhub needs a bearer token here: pass token= or set HF_TOKEN "
                "(see the token file the server printed at start)"
            )
        return self.identity

    def readable(self, repo: RepoKey) -> dict[str, Any]:
        """The repo's record when the caller may read it; RepoNotFound otherwise (private repos hide)."""
        meta = self.store.repo_meta(repo)
        if meta.get("private") and not (self.identity is not None and self.identity.owns(repo.namespace)):
            raise RepoNotFound(f"{repo.type} repo {repo.id!r} not found")
        return meta

    def require_write(self, repo: RepoKey, *, exists: bool = True) -> Identity:
        """The caller's identity when it may write to `repo` (its namespace); 401/403/404 otherwise."""
        identity = self.require_identity()
        if exists:
            self.readable(repo)
        if not identity.write:
            raise Forbidden(f"the token of {identity.user!r} is read-only; writes need a write token")
        if not identity.owns(repo.namespace):
            raise Forbidden(f"{identity.user!r} may not write to the namespace {repo.namespace!r}")
        return identity

    def lfs_available(self, oid: str) -> bool:
        """Whether `oid` is stored and the caller uploaded it or can read a repo holding it."""
        if self.store.lfs_size(oid) is None:
            return False
        repos, users = self.store.lfs_holders(oid)
        return (self.identity is not None and self.identity.user in users) or any(map(self._may_read, repos))

    def _may_read(self, repo: RepoKey) -> bool:
        try:
            self.readable(repo)
            return True
        except LocalHubError:
            return False

    # ---- requests and answers

    def own_url(self, path: str) -> str:
        """A URL on this server, built from its own address (never from the request's Host header)."""
        return f"{self.hub.endpoint}/{path.lstrip('/')}"

    def repo_url(self, repo: RepoKey) -> str:
        return self.own_url(f"{_URL_PREFIX[repo.type]}{repo.id}")

    def json_object(self) -> dict[str, Any]:
        data = self.body.read()
        try:
            body = json.loads(data) if data else {}
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise BadRequest(f"request body is not valid JSON: {exc}") from exc
        if not isinstance(body, dict):
            raise BadRequest("request body must be a JSON object")
        return body

    def check_fault(self, point: str) -> None:
        fault = self.hub.faults.take(point)
        if fault is not None:
            self.body.drain()
            raise Drop() if fault.drop else Reply(fault.status, f"injected fault at {point}")

    def send_json(
        self, status: int, obj: Any, headers: dict[str, str] | None = None, ctype: str = ""
    ) -> None:
        body = json.dumps(obj).encode()
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, header_value(value, 2000))
        self.send_header("Content-Type", ctype or "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _answer_error(self, error: LocalHubError) -> None:
        """Send ``error``, unless an answer has begun: then the connection is the only thing to end."""
        if self.answered:
            self.close_connection = True
            return
        headers = dict(getattr(error, "headers", {}))
        headers["X-Error-Message"] = header_value(
            _NO_TOKEN if isinstance(error, Unauthorized) else str(error)
        )
        if error.code:
            headers["X-Error-Code"] = error.code
        if self.body is None or not self.body.done:
            headers["Connection"] = "close"
            self.close_connection = True
        self.send_json(error.status, {"error": str(error)}, headers)


def header_value(text: str, limit: int = 300) -> str:
    """`text` safe as an HTTP header value: printable ASCII only (no CR/LF), at most `limit` characters."""
    return _UNSAFE_HEADER.sub("?", text)[:limit]


def truthy(query: dict[str, list[str]], name: str) -> bool:
    return (query.get(name) or ["false"])[0].lower() in ("1", "true", "yes")


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``(start, length)`` for a single ``bytes=`` range; None means "send it all"; raises on 416."""
    if not header or not header.startswith("bytes=") or "," in header:
        return None
    first, _, last = header[len("bytes=") :].strip().partition("-")
    try:
        start = int(first) if first else max(size - int(last), 0)
        end = min(int(last), size - 1) if first and last else size - 1
    except ValueError:
        return None
    if start >= size or end < start:
        message = f"range {header_value(header, 60)} not satisfiable for {size} bytes"
        raise Reply(416, message, headers={"Content-Range": f"bytes */{size}"})
    return start, end - start + 1


def front_matter(text: str) -> dict[str, Any] | None:
    """The YAML header of a model/dataset card, or None when it has none; raises yaml.YAMLError."""
    end = text.find("\n---", 3) if text.startswith("---") else -1
    data = yaml.safe_load(text[3:end]) if end >= 0 else None
    return data if isinstance(data, dict) else None
