"""LFS upload tickets: the only way bytes get into the local Hub's LFS store.

The batch endpoint, called with a write token for a repo, issues one random ticket per object
to upload. The upload URL carries the ticket; the ticket is bound to the object's sha256 and size,
expires after ``ttl`` seconds, and is spent by the first upload that completes (a failed attempt
leaves it usable, so the client's own retries work). Verify calls name the same ticket.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from dataclasses import dataclass

from hubkit.localhub.errors import Forbidden

DEFAULT_TTL = 600.0


@dataclass
class Ticket:
    oid: str
    size: int
    user: str
    expires: float
    busy: bool = False
    spent: bool = False


class UploadTickets:
    """Tickets issued by the batch endpoint, checked and spent by the upload endpoint."""

    def __init__(self, ttl: float = DEFAULT_TTL) -> None:
        self.ttl = ttl
        self._tickets: dict[str, Ticket] = {}
        self._lock = threading.Lock()

    def issue(self, oid: str, size: int, user: str) -> str:
        """A new ticket for `user` to upload `size` bytes with sha256 `oid`."""
        ticket = secrets.token_urlsafe(24)
        now = time.monotonic()
        with self._lock:
            self._tickets = {k: t for k, t in self._tickets.items() if t.expires > now}  # forget old ones
            self._tickets[ticket] = Ticket(oid, size, user, now + self.ttl)
        return ticket

    def _find(self, ticket: str, oid: str, size: int | None) -> Ticket:
        found = None
        for key, value in self._tickets.items():
            if hmac.compare_digest(key.encode(), ticket.encode()):
                found = value
        if found is None or found.expires <= time.monotonic():
            raise Forbidden("LFS upload URL is unknown or expired; ask the batch endpoint for a new one")
        if found.oid != oid or (size is not None and found.size != size):
            raise Forbidden("LFS upload URL was issued for another object (oid or size differ)")
        return found

    def begin(self, ticket: str, oid: str, size: int) -> Ticket:
        """Claim `ticket` for an upload of `oid`/`size`; raises Forbidden when it may not be used."""
        with self._lock:
            found = self._find(ticket, oid, size)
            if found.spent or found.busy:
                raise Forbidden("LFS upload URL was already used; ask the batch endpoint for a new one")
            found.busy = True
            return found

    def end(self, found: Ticket, *, ok: bool) -> None:
        """Release a claimed ticket: spent after a complete upload, usable again after a failed one."""
        with self._lock:
            found.busy, found.spent = False, found.spent or ok

    def check(self, ticket: str, oid: str) -> Ticket:
        """The ticket a verify call names (still valid, for `oid`)."""
        with self._lock:
            return self._find(ticket, oid, None)
