"""The local Hub: a loopback HTTP server speaking the part of the Hub API the real clients use.

One server at a time holds a root; a restarted one serves the same repos. Not implemented: pull
requests, Xet storage (clients must run with ``HF_HUB_DISABLE_XET=1``), multipart LFS, pagination.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import os
import socket
import threading
from pathlib import Path

from filelock import FileLock, Timeout

from hubkit.hub.redaction import protect
from hubkit.localhub.access import (
    LOCAL_ORGS,
    LOCAL_USER,
    Identity,
    TokenTable,
    UploadTickets,
    load_token_file,
    local_token_file,
)
from hubkit.localhub.connections import ConnectionServer, SocketReader, SocketWriter
from hubkit.localhub.errors import RootInUse, ServerConfigError
from hubkit.localhub.faults import Faults, Stats
from hubkit.localhub.limits import Limits
from hubkit.localhub.routes import Handler
from hubkit.localhub.storage import HubStore

logger = logging.getLogger(__name__)
_RUNNING: dict[str, LocalHub] = {}  # endpoint -> server, for use_endpoint in this process
_RUNNING_LOCK = threading.Lock()


def _loopback_host(host: str) -> str:
    """The IPv4 loopback address to bind; anything reachable from other machines is refused."""
    address = "127.0.0.1" if host == "localhost" else host
    try:
        ok = ipaddress.ip_address(address).is_loopback and ipaddress.ip_address(address).version == 4
    except ValueError:
        ok = False
    if not ok:
        raise ServerConfigError(
            f"hubkit localhub only listens on IPv4 loopback (127.x.x.x or localhost), not {host!r}: it speaks "
            "plain HTTP, so tokens and uploads would cross the network unencrypted; put a TLS proxy in front "
            "of a loopback server to share it"
        )
    return address


class LocalHub:
    """A local Hub endpoint over ``root``, served from background threads (a context manager).

    Without ``token_file`` it uses (creating it once) a 0600 file under ``root`` holding a write token
    for the local user, `token`.
    """

    def __init__(
        self,
        root: str | Path,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        token_file: str | Path | None = None,
        limits: Limits | None = None,
    ) -> None:
        self.root = Path(root)
        self.host = _loopback_host(host)
        self.port = port
        self.token_file = Path(token_file) if token_file is not None else None
        self.limits = limits or Limits()
        self.faults = Faults()
        self.stats = Stats()
        self.tokens = TokenTable()
        self.uploads = UploadTickets(self.limits.upload_ttl)
        self.token: str | None = None  # the local user's token, when started without a token file
        self.local_token_path: Path | None = None  # the token file the server created under its root
        try:
            self.store = HubStore(self.root)
        except OSError as exc:
            raise ServerConfigError(
                f"cannot use {self.root} as the hub root: {exc.strerror or exc} ({exc.filename}); "
                "choose a directory you can write"
            ) from None
        # one server per root, across processes (started and stopped from any thread); the holder's pid beside it
        self._lock = FileLock(self.root / ".server.lock", timeout=0, thread_local=False)
        self._pid_file = self.root / ".server.pid"
        self._server: ConnectionServer | None = None

    def _load_tokens(self) -> None:
        if self.token_file is None:
            self.local_token_path = local_token_file(self.root)
        self.tokens = TokenTable(load_token_file(self.token_file or self.local_token_path))
        self.token = None if self.token_file is not None else next(iter(self.tokens.tokens))
        protect(*self.tokens.tokens)
        if self.token_file is not None and self.token_file.stat().st_mode & 0o077:
            logger.warning("hubkit localhub: %s is readable by other users; chmod 600 it", self.token_file)

    def add_token(self, token: str, identity: Identity | None = None) -> None:
        """Accept `token` too (default: as the local user, owner of every namespace), in this process only."""
        protect(token)
        self.tokens.add(token, identity or Identity(LOCAL_USER, True, LOCAL_ORGS, admin=True))

    @property
    def endpoint(self) -> str:
        """``http://127.0.0.1:PORT``: what ``HF_ENDPOINT`` / ``endpoint=`` should be set to."""
        if self._server is None:
            raise RuntimeError("LocalHub is not running: call start() or use it as a context manager")
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> LocalHub:
        """Lock the root, bind the port (``port=0`` picks a free one) and serve in background threads."""
        if self._server is not None:
            return self
        try:
            self._lock.acquire()
        except Timeout:
            holder = self._pid_file.read_text().strip() if self._pid_file.exists() else ""
            raise RootInUse(
                f"{self.root} is already served by another hubkit localhub (pid {holder or 'unknown'}); "
                "stop it or serve another --root"
            ) from None
        self._pid_file.write_text(str(os.getpid()))
        try:
            self._load_tokens()
            cleaned = self.store.clean_tmp()
            if cleaned:
                logger.info("hubkit localhub: removed %d partial writes left in %s", cleaned, self.store.tmp)
            server = self._bind()
        except BaseException:
            self._release_root()
            raise
        self.port = server.address[1]
        self._server = server
        server.start(name=f"localhub:{self.port}")
        with _RUNNING_LOCK:
            _RUNNING[self.endpoint] = self
        logger.info("hubkit localhub serving %s on %s", self.root, self.endpoint)
        return self

    def _bind(self) -> ConnectionServer:
        try:
            return ConnectionServer((self.host, self.port), self._serve_one, self.limits)
        except OSError as exc:
            why = (
                "is already in use" if exc.errno == errno.EADDRINUSE else f"cannot be bound ({exc.strerror})"
            )
            raise ServerConfigError(
                f"port {self.port} on {self.host} {why}; choose another --port (0 picks a free one)"
            ) from None

    def stop(self) -> None:
        """Stop accepting requests, close open connections, release the root."""
        server, self._server = self._server, None
        if server is None:
            return
        with _RUNNING_LOCK:
            _RUNNING.pop(f"http://{self.host}:{self.port}", None)
        server.stop()
        self._release_root()
        logger.info("hubkit localhub on port %d stopped", self.port)

    def _release_root(self) -> None:
        self._pid_file.unlink(missing_ok=True)
        self._lock.release()

    def _serve_one(self, sock: socket.socket, reader: SocketReader, address: tuple) -> bool:
        """Answer one request from `reader` on `sock`; whether the connection may stay open."""
        handler = Handler.__new__(Handler)  # not __init__: that would serve the whole connection
        handler.hub, handler.client_address = self, address
        handler.request = handler.connection = sock
        handler.rfile, handler.wfile = reader, SocketWriter(sock)
        handler.close_connection = True
        handler.handle_one_request()
        return not handler.close_connection

    def wait(self) -> None:
        """Block until :meth:`stop` is called from elsewhere (Ctrl-C raises KeyboardInterrupt), for a CLI."""
        while self._server is not None and self._server.alive:
            threading.Event().wait(0.5)

    def __enter__(self) -> LocalHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"LocalHub(root={str(self.root)!r}, {self.endpoint if self.running else 'stopped'})"


def running_hub(endpoint: str) -> LocalHub | None:
    with _RUNNING_LOCK:
        return _RUNNING.get(endpoint.rstrip("/"))
