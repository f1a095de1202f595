"""Requests the local Hub refuses; the server maps each class to the Hub's HTTP status and code."""

from __future__ import annotations

from hubkit.errors import HubkitError


class LocalHubError(HubkitError):
    """A request (or a start-up) the local Hub refuses, with a one-line reason."""


class ServerConfigError(LocalHubError, ValueError):
    """A server that cannot start as asked (host, root, port, token file)."""


class RepoNotFound(LocalHubError):
    """No repo of that type and id (or one the caller may not see)."""


class RevisionNotFound(LocalHubError):
    """The revision is not a branch, tag or commit of the repo."""


class EntryNotFound(LocalHubError):
    """No file or folder at that path in that revision."""


class Conflict(LocalHubError):
    """The repo, branch or tag already exists."""


class BadRequest(LocalHubError):
    """Malformed or inconsistent input (bad name, path, hash, missing LFS object...)."""


class PreconditionFailed(LocalHubError):
    """The branch moved since the ``parentCommit`` the client based its commit on."""


class Forbidden(LocalHubError):
    """A request the caller's token does not allow, or one the Hub refuses (deleting the default branch)."""


class Unauthorized(LocalHubError):
    """No token where one is needed, or a token the server does not know."""


class TooLarge(LocalHubError):
    """A request body over the server's limit (answered before the body is read when it is announced)."""


#: HTTP status and ``X-Error-Code`` of each error.
HTTP_STATUS: dict[type[LocalHubError], tuple[int, str | None]] = {
    RepoNotFound: (404, "RepoNotFound"),
    RevisionNotFound: (404, "RevisionNotFound"),
    EntryNotFound: (404, "EntryNotFound"),
    Conflict: (409, None),
    BadRequest: (400, None),
    PreconditionFailed: (412, None),
    Forbidden: (403, None),
    Unauthorized: (401, None),
    TooLarge: (413, None),
}
