"""Requests the local Hub refuses; each class carries the Hub's HTTP status and ``X-Error-Code``."""

from __future__ import annotations

from hubkit.errors import HubkitError


class LocalHubError(HubkitError):
    """A request (or a start-up) the local Hub refuses, with a one-line reason."""

    status: int = 400
    code: str | None = None


class ServerConfigError(LocalHubError, ValueError):
    """A server that cannot start as asked (host, root, port, token file)."""


class RootInUse(LocalHubError):
    """Another server holds the root."""


class RepoNotFound(LocalHubError):
    """No repo of that type and id (or one the caller may not see)."""

    status, code = 404, "RepoNotFound"


class RevisionNotFound(LocalHubError):
    """The revision is not a branch, tag or commit of the repo."""

    status, code = 404, "RevisionNotFound"


class EntryNotFound(LocalHubError):
    """No file or folder at that path in that revision."""

    status, code = 404, "EntryNotFound"


class Conflict(LocalHubError):
    """The repo, branch or tag already exists."""

    status = 409


class BadRequest(LocalHubError):
    """Malformed or inconsistent input (bad name, path, hash, missing LFS object...)."""


class PreconditionFailed(LocalHubError):
    """The branch moved since the ``parentCommit`` the client based its commit on."""

    status = 412


class Forbidden(LocalHubError):
    """A request the caller's token does not allow, or one the Hub refuses (deleting the default branch)."""

    status = 403


class Unauthorized(LocalHubError):
    """No token where one is needed, or a token the server does not know."""

    status = 401


class TooLarge(LocalHubError):
    """A request body over the server's limit (answered before the body is read when it is announced)."""

    status = 413
