"""Raw HTTP/1.1 over a loopback socket, for requests no well-behaved client would send."""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit


@dataclass
class Answer:
    status: int
    headers: dict[str, str]  # lower-case names
    raw_head: bytes
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def connect(endpoint: str, timeout: float = 10.0) -> socket.socket:
    url = urlsplit(endpoint)
    return socket.create_connection((url.hostname, url.port), timeout=timeout)


def read_answer(sock: socket.socket, pending: bytearray | None = None) -> Answer:
    """One response from `sock` (Content-Length framed; the socket's timeout bounds every read).

    `pending` holds bytes already received past earlier answers on the same connection (pipelining);
    it is consumed and refilled with what follows this answer.
    """
    data = bytes(pending or b"")
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"connection closed before a full answer: {data!r}")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    if pending is not None:
        pending[:] = rest[length:]
    return Answer(status, headers, head, rest[:length])


def request(
    endpoint: str,
    method: str,
    path: str,
    *,
    token: str | None = None,
    body: bytes | dict | list | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 10.0,
) -> Answer:
    """Send one request on a fresh connection and read its answer."""
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
    lines = [f"{method} {path} HTTP/1.1", f"Host: {urlsplit(endpoint).netloc}", "Connection: close"]
    all_headers = dict(headers or {})
    if token is not None:
        all_headers["Authorization"] = f"Bearer {token}"
    if body is not None and "Content-Length" not in all_headers:
        all_headers["Content-Length"] = str(len(body))
    lines += [f"{k}: {v}" for k, v in all_headers.items()]
    with connect(endpoint, timeout) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b""))
        return read_answer(sock)
