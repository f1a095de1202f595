"""How much the local Hub accepts and for how long it waits: sizes, connections, timeouts."""

from __future__ import annotations

from dataclasses import dataclass

MiB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """Limits of one server, sizes in bytes and times in seconds (see `connections` for how they apply)."""

    max_body: int = 256 * MiB  # JSON and commit bodies (a commit carries regular files, base64)
    max_anonymous_body: int = MiB  # bodies of requests without a token (validate-yaml, paths-info)
    max_upload: int = 64 * 1024 * MiB  # one LFS object
    max_connections: int = 256  # open sockets, waiting or served
    workers: int = 32  # requests served at once
    max_header_bytes: int = 64 * 1024
    header_timeout: float = 10.0  # from the first byte (or the connect) to a complete request head
    idle_timeout: float = 30.0  # a keep-alive connection waiting for its next request
    io_timeout: float = 60.0  # one read or write of a body while a request is served
    min_body_rate: float = 64 * 1024  # bytes/s a body must average after the first io_timeout
    upload_ttl: float = 600.0  # how long an LFS upload URL stays valid

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if not value > 0:
                raise ValueError(f"localhub limit {name} must be positive, not {value!r}")
