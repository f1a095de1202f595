"""Who may do what on the local Hub: bearer tokens, their users and orgs, and LFS upload tickets.

A token file is YAML::

    tokens:
      hf_...: {user: alice, write: true, orgs: [lab]}
      hf_...: {user: bob, write: false}

A namespace is owned by the user of that name and the members of the org of that name; writes need
an owner's write token, private repos are readable by owners only, ``admin: true`` owns every namespace.
LFS bytes enter only with a ticket the batch endpoint issued for that sha256 and size, spent by the
first upload that completes.
"""

from __future__ import annotations

import hmac
import os
import secrets
import stat
import threading
import time
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hubkit.localhub.errors import Forbidden, ServerConfigError

LOCAL_USER = "hubkit-local"
LOCAL_ORGS = ("hubkit-org",)
LOCAL_TOKEN_FILE = "access-tokens.yaml"
_KEYS = {"user", "write", "orgs", "admin"}


class AccessConfigError(ServerConfigError):
    """A token file that cannot be read or does not have the documented shape."""


@dataclass(frozen=True)
class Identity:
    """What a token stands for."""

    user: str
    write: bool = False
    orgs: tuple[str, ...] = ()
    admin: bool = False

    def owns(self, namespace: str) -> bool:
        """Whether repos under `namespace` belong to this identity (its user, one of its orgs, or admin)."""
        return self.admin or namespace == self.user or namespace in self.orgs


def _identity(token: str, entry: Any, where: str) -> Identity:
    if not isinstance(entry, dict) or set(entry) - _KEYS or not isinstance(entry.get("user"), str):
        raise AccessConfigError(
            f"{where}: each token maps to {{user: NAME, write: true|false, orgs: [...]}}; "
            f"token #{token} has {entry!r:.80}"
        )
    orgs = entry.get("orgs") or []
    if not isinstance(orgs, list) or not all(isinstance(o, str) for o in orgs):
        raise AccessConfigError(f"{where}: 'orgs' of user {entry['user']!r} must be a list of names")
    for flag in ("write", "admin"):
        if not isinstance(entry.get(flag, False), bool):
            raise AccessConfigError(f"{where}: '{flag}' of user {entry['user']!r} must be true or false")
    return Identity(entry["user"], bool(entry.get("write")), tuple(orgs), bool(entry.get("admin")))


def load_token_file(path: str | Path) -> dict[str, Identity]:
    """``{token: Identity}`` from a token file; raises AccessConfigError with a one-line reason."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise AccessConfigError(f"{path}: cannot read the token file ({type(exc).__name__})") from None
    tokens = data.get("tokens") if isinstance(data, dict) else None
    if not isinstance(tokens, dict) or not tokens:
        raise AccessConfigError(
            f"{path}: expected a top-level 'tokens:' mapping of token -> {{user, write, orgs}}"
        )
    out = {}
    for i, (token, entry) in enumerate(tokens.items(), 1):
        if not isinstance(token, str) or len(token) < 8:
            raise AccessConfigError(f"{path}: token #{i} must be a string of at least 8 characters")
        out[token] = _identity(str(i), entry, str(path))
    return out


def local_token_file(root: Path) -> Path:
    """The local user's admin write token under `root`: created (mode 0600) on first use, then reused."""
    path = root / LOCAL_TOKEN_FILE
    if not path.exists():
        token = "hf_local_" + secrets.token_urlsafe(24)
        entry = {"user": LOCAL_USER, "write": True, "orgs": list(LOCAL_ORGS), "admin": True}
        text = "# hubkit localhub access tokens (keep private)\n" + yaml.safe_dump({"tokens": {token: entry}})
        with (
            suppress(FileExistsError),
            os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f,
        ):
            f.write(text)  # O_EXCL: a concurrent first start keeps the file the other one wrote
    if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        os.chmod(path, 0o600)
    return path


@dataclass
class TokenTable:
    """The tokens a server accepts; thread-safe, with tokens added in-process for tests and the demo."""

    tokens: dict[str, Identity] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def lookup(self, token: str) -> Identity | None:
        """The identity of `token`, or None when it is unknown (constant-time comparisons)."""
        with self._lock:
            return _find(self.tokens, token)

    def add(self, token: str, identity: Identity) -> None:
        with self._lock:
            self.tokens[token] = identity

    def __repr__(self) -> str:  # never print tokens
        return f"TokenTable({len(self.tokens)} tokens)"


def _find(table: dict[str, Any], secret: str) -> Any:
    """The value of `secret` in `table`, or None; every key is compared, in constant time."""
    found = None
    for known, value in table.items():
        if hmac.compare_digest(known.encode(), secret.encode()):
            found = value
    return found


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

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._tickets: dict[str, Ticket] = {}
        self._lock = threading.Lock()

    def issue(self, oid: str, size: int, user: str) -> str:
        ticket, now = secrets.token_urlsafe(24), time.monotonic()
        with self._lock:
            self._tickets = {k: t for k, t in self._tickets.items() if t.expires > now}  # forget old ones
            self._tickets[ticket] = Ticket(oid, size, user, now + self.ttl)
        return ticket

    def _find(self, ticket: str, oid: str, size: int | None) -> Ticket:
        found = _find(self._tickets, ticket)
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
