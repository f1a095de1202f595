"""Connections of the local Hub: one selector thread waits, a bounded pool of workers serves.

A socket gets a worker only once its request head has fully arrived, so a silent or slow client
holds no thread (closed after ``header_timeout``; the oldest is dropped at ``max_connections``); a
keep-alive connection goes back to the selector (``idle_timeout``) after each answer.
"""

from __future__ import annotations

import logging
import os
import selectors
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field

from hubkit.localhub.limits import Limits

logger = logging.getLogger(__name__)
_RECV = 64 * 1024
_HEAD_END = (b"\r\n\r\n", b"\n\n")
_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
)
_TOO_LARGE = b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class SocketReader:
    """What a request handler reads from: bytes already received by the selector, then the socket."""

    def __init__(self, sock: socket.socket, buffered: bytes) -> None:
        self._sock = sock
        self._buf = bytearray(buffered)

    def _fill(self) -> bool:
        data = self._sock.recv(_RECV)
        self._buf += data
        return bool(data)

    def readline(self, limit: int = -1) -> bytes:
        while (end := self._buf.find(b"\n")) < 0 or 0 <= limit <= end:
            if 0 <= limit <= len(self._buf) or not self._fill():
                return self._take(len(self._buf) if limit < 0 else min(limit, len(self._buf)))
        return self._take(end + 1)

    def read(self, n: int = -1) -> bytes:
        """Up to `n` bytes (fewer when that is what has arrived); b"" at the end of the stream."""
        if not self._buf:
            return self._sock.recv(n if n >= 0 else _RECV)
        return self._take(len(self._buf) if n < 0 else n)

    def _take(self, n: int) -> bytes:
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    def leftover(self) -> bytes:
        """Bytes received but not read (the start of a pipelined next request)."""
        return bytes(self._buf)


class SocketWriter:
    """Unbuffered writes to a socket (the interface ``BaseHTTPRequestHandler`` writes to)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def write(self, data: bytes) -> int:
        self._sock.sendall(data)
        return len(data)

    def flush(self) -> None:
        pass


#: Serves one request read from the reader; returns whether the connection may be kept open.
Serve = Callable[[socket.socket, SocketReader, tuple], bool]


@dataclass(eq=False)
class _Conn:
    sock: socket.socket
    address: tuple
    deadline: float
    buf: bytearray = field(default_factory=bytearray)
    opened: float = field(default_factory=time.monotonic)

    @property
    def head_complete(self) -> bool:
        return any(end in self.buf for end in _HEAD_END)


class ConnectionServer:
    """Accepts on `address` and hands complete requests to `serve`, within `limits`."""

    def __init__(self, address: tuple[str, int], serve: Serve, limits: Limits) -> None:
        self.limits = limits
        self._serve = serve
        self._listener = socket.create_server(address, backlog=512)
        self._listener.setblocking(False)
        self.address = self._listener.getsockname()[:2]
        self._selector = selectors.DefaultSelector()
        self._waiting: dict[socket.socket, _Conn] = {}
        self._active: set[_Conn] = set()
        self._returned: list[_Conn] = []
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._pool = ThreadPoolExecutor(max_workers=limits.workers, thread_name_prefix="localhub-worker")
        self._stopping = False
        self._thread: threading.Thread | None = None

    # ---- lifecycle

    def start(self, name: str) -> None:
        self._selector.register(self._listener, selectors.EVENT_READ, "accept")
        self._selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting, close waiting connections, cut off active ones, release the port."""
        self._stopping = True
        self._wake()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._lock:
            conns = list(self._waiting.values()) + list(self._active) + self._returned
        for conn in conns:
            _close(conn.sock)
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._listener.close()
        self._selector.close()
        os.close(self._wake_r)
        os.close(self._wake_w)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def open_connections(self) -> int:
        with self._lock:
            return len(self._waiting) + len(self._active)

    def _wake(self) -> None:
        with suppress(OSError):
            os.write(self._wake_w, b"x")

    # ---- the selector thread

    def _loop(self) -> None:
        while not self._stopping:
            for key, _ in self._selector.select(timeout=0.5):
                if key.data == "accept":
                    self._accept()
                elif key.data == "wake":
                    self._drain_wake()
                else:
                    self._receive(key.data)
            self._expire()

    def _accept(self) -> None:
        while True:
            try:
                sock, address = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. out of file descriptors: stop accepting for this round
                logger.warning("localhub: accept failed: %s", exc)
                return
            sock.setblocking(False)
            self._make_room()
            if self.open_connections >= self.limits.max_connections:  # every slot is being served
                _send_quietly(sock, _BUSY)
                _close(sock)
                continue
            self._watch(_Conn(sock, address, time.monotonic() + self.limits.header_timeout))

    def _make_room(self) -> None:
        """Drop the oldest waiting connection while the server is at its connection limit."""
        while self.open_connections >= self.limits.max_connections and self._waiting:
            self._forget(min(self._waiting.values(), key=lambda c: c.opened), close=True)

    def _watch(self, conn: _Conn) -> None:
        with self._lock:
            self._waiting[conn.sock] = conn
        self._selector.register(conn.sock, selectors.EVENT_READ, conn)

    def _forget(self, conn: _Conn, close: bool = False) -> None:
        with self._lock:
            self._waiting.pop(conn.sock, None)
        with suppress(KeyError, ValueError):
            self._selector.unregister(conn.sock)
        if close:
            _close(conn.sock)

    def _receive(self, conn: _Conn) -> None:
        try:
            data = conn.sock.recv(_RECV)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._forget(conn, close=True)
            return
        if not conn.buf:  # first byte of a request: the head must now arrive within header_timeout
            conn.deadline = time.monotonic() + self.limits.header_timeout
        conn.buf += data
        if conn.head_complete:
            self._forget(conn)
            self._dispatch(conn)
        elif len(conn.buf) > self.limits.max_header_bytes:
            _send_quietly(conn.sock, _TOO_LARGE)
            self._forget(conn, close=True)

    def _expire(self) -> None:
        now = time.monotonic()
        with self._lock:
            late = [c for c in self._waiting.values() if c.deadline <= now]
        for conn in late:
            self._forget(conn, close=True)

    def _drain_wake(self) -> None:
        with suppress(BlockingIOError):
            while os.read(self._wake_r, 4096):
                pass
        with self._lock:
            returned, self._returned = self._returned, []
        for conn in returned:
            if self._stopping:
                _close(conn.sock)
            else:
                self._watch(conn)

    # ---- workers

    def _dispatch(self, conn: _Conn) -> None:
        with self._lock:
            self._active.add(conn)
        try:
            self._pool.submit(self._work, conn)
        except RuntimeError:  # shutting down
            self._done(conn, keep=False)

    def _work(self, conn: _Conn) -> None:
        keep = False
        try:
            conn.sock.setblocking(True)
            conn.sock.settimeout(self.limits.io_timeout)
            while True:
                reader = SocketReader(conn.sock, bytes(conn.buf))
                keep = self._serve(conn.sock, reader, conn.address) and not self._stopping
                conn.buf = bytearray(reader.leftover())
                if not (keep and conn.head_complete):
                    break
        except Exception:  # a broken connection or a handler bug: this connection ends, the server goes on
            logger.debug("localhub: connection from %s ended with an error", conn.address[0], exc_info=True)
            keep = False
        self._done(conn, keep)

    def _done(self, conn: _Conn, keep: bool) -> None:
        with self._lock:
            self._active.discard(conn)
        if not keep:
            _close(conn.sock)
            return
        conn.sock.setblocking(False)
        conn.opened = time.monotonic()
        conn.deadline = conn.opened + (self.limits.header_timeout if conn.buf else self.limits.idle_timeout)
        with self._lock:
            self._returned.append(conn)
        self._wake()


def _send_quietly(sock: socket.socket, data: bytes) -> None:
    with suppress(OSError):
        sock.send(data)


def _close(sock: socket.socket) -> None:
    with suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with suppress(OSError):
        sock.close()
