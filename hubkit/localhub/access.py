"""Who may do what on the local Hub: bearer tokens, their users and orgs, and namespace ownership.

A token file is YAML::

    tokens:
      hf_...: {user: alice, write: true, orgs: [lab]}
      hf_...: {user: bob, write: false}

A namespace (the ``ns`` of ``ns/name``) is owned by the user of that name and by the members of
the org of that name. Writes need a write token of an owner; private repos are readable only by
their owners. ``admin: true`` owns every namespace: the token a server creates for the local user
when it is started without a token file (written 0600 under its root, reused on restart).
Tokens are compared in constant time and never appear in messages.
"""

from __future__ import annotations

import hmac
import os
import secrets
import stat
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hubkit.localhub.errors import ServerConfigError

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

    def can_write(self, namespace: str) -> bool:
        return self.write and self.owns(namespace)


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


def local_token_file(root: Path) -> tuple[Path, str]:
    """The local user's admin write token under `root`: created (mode 0600) on first use, then reused."""
    path = root / LOCAL_TOKEN_FILE
    if not path.exists():
        token = "hf_local_" + secrets.token_urlsafe(24)
        entry = {"user": LOCAL_USER, "write": True, "orgs": list(LOCAL_ORGS), "admin": True}
        text = "# hubkit localhub access tokens (keep private)\n" + yaml.safe_dump({"tokens": {token: entry}})
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as f:
                f.write(text)
    if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        os.chmod(path, 0o600)
    tokens = load_token_file(path)
    return path, next(iter(tokens))


@dataclass
class TokenTable:
    """The tokens a server accepts; thread-safe, with tokens added in-process for tests and the demo."""

    tokens: dict[str, Identity] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def lookup(self, token: str) -> Identity | None:
        """The identity of `token`, or None when it is unknown (constant-time comparisons)."""
        with self._lock:
            items = list(self.tokens.items())
        found = None
        for known, identity in items:
            if hmac.compare_digest(known.encode(), token.encode()):
                found = identity
        return found

    def add(self, token: str, identity: Identity) -> None:
        with self._lock:
            self.tokens[token] = identity

    def __repr__(self) -> str:  # never print tokens
        return f"TokenTable({len(self.tokens)} tokens)"
