"""The request handler's base: one request in, one Hub-style answer out, with who is asking.

The routes live in :mod:`~hubkit.localhub.routes`, on a subclass. Every request is answered with
the Hub's status codes and ``X-Error-Code`` headers, so ``huggingface_hub`` raises its usual
exceptions. A bearer token the server does not know is refused (401) on every route.
"""

from __future__ import annotations

import json
import logging
import re
from http.server import BaseHTTPRequestHandler
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

from hubkit.localhub.access import Identity, TokenTable, UploadTickets
from hubkit.localhub.errors import BadRequest, Forbidden, LocalHubError, RepoNotFound, Unauthorized
from hubkit.localhub.faults import Faults, Stats
from hubkit.localhub.http import Body, Drop, Reply, header_value
from hubkit.localhub.limits import Limits
from hubkit.localhub.objects import RepoKey
from hubkit.localhub.storage import HubStore

logger = logging.getLogger("hubkit.localhub.server")
_URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
_NO_TOKEN = "Invalid credentials in Authorization header"  # the Hub's summary: clients report a 401
_QUERY = re.compile(r"\?[^\s\"]*")


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


class _Unread:
    """Stands for a body that could not even be framed: the connection must close."""

    done = False

    def drain(self) -> None:
        pass


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
        logger.debug("%s - %s", self.address_string(), _QUERY.sub("?…", format % args))

    def address_string(self) -> str:
        return str(self.client_address[0])

    @property
    def store(self) -> HubStore:
        return self.hub.store

    # ---- dispatch

    def _dispatch(self) -> None:
        self.hub.stats.add(requests=1)
        url = urlsplit(self.path)
        self.query = parse_qs(url.query)
        self.answered = False
        self.body: Any = _Unread()
        try:
            self._open_body(url.path)
            self._route([unquote(s) for s in url.path.split("/")[1:]])()
        except (Drop, ConnectionError, TimeoutError):
            self.close_connection = True
            return
        except LocalHubError as exc:
            summary = _NO_TOKEN if isinstance(exc, Unauthorized) else None
            self._answer_error(Reply(exc.status, str(exc), exc.code, summary=summary))
        except Reply as exc:
            self._answer_error(exc)
        except Exception:
            logger.exception("localhub: internal error on %s %s", self.command, url.path)
            self._answer_error(Reply(500, "internal error in hubkit localhub (see its log)"))
        if not self.body.done:
            self.close_connection = True  # an unread body would be parsed as the next request

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _dispatch

    def _open_body(self, path: str) -> None:
        """Frame the body, learn who is asking, refuse an announced body over their limit before reading it.

        Requests without a token get the small anonymous limit; an LFS upload is checked later
        against the size its URL was issued for.
        """
        limits = self.hub.limits
        self.body = Body(self, limits.max_body, pace=(limits.io_timeout, limits.min_body_rate))
        self.identity = self._identify()
        if self.identity is None:
            self.body.limit = min(limits.max_body, limits.max_anonymous_body)
        if not (self.command == "PUT" and path.startswith("/_localhub/lfs/")):
            self.body.check_announced()

    def _route(self, segs: list[str]) -> Any:  # pragma: no cover - defined by the router
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

    # ---- answers

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
        if fault is None:
            return
        self.body.drain()
        if fault.drop:
            raise Drop()
        raise Reply(fault.status, f"injected fault at {point}")

    def send_json(
        self, status: int, obj: Any, headers: dict[str, str] | None = None, ctype: str = ""
    ) -> None:
        self.send(status, json.dumps(obj).encode(), ctype or "application/json", headers)

    def send(self, status: int, body: bytes, ctype: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, header_value(value, 2000))
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _answer_error(self, reply: Reply) -> None:
        """Send ``reply``, unless an answer has begun: then the connection is the only thing to end."""
        if self.answered:
            self.close_connection = True
            return
        headers = dict(reply.headers)
        headers["X-Error-Message"] = header_value(reply.summary)
        if reply.code:
            headers["X-Error-Code"] = reply.code
        if not self.body.done:
            headers["Connection"] = "close"
            self.close_connection = True
        self.send_json(reply.status, {"error": reply.message}, headers)
