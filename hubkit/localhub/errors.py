"""Requests the local Hub refuses; each class carries the Hub's HTTP status and ``X-Error-Code``."""

from __future__ import annotations

from hubkit.errors import HubkitError


class LocalHubError(HubkitError):
    """A request (or a start-up) the local Hub refuses, with a one-line reason."""

    status: int = 400  # malformed or inconsistent input (bad name, path, hash, missing LFS object...)
    code: str | None = None


class BadRequest(LocalHubError):
    pass


class ServerConfigError(LocalHubError, ValueError):
    """A server that cannot start as asked (host, root, port, token file)."""


class RootInUse(LocalHubError):
    """Another server holds the root."""


class RepoNotFound(LocalHubError):  # no repo of that type and id (or one the caller may not see)
    status, code = 404, "RepoNotFound"


class RevisionNotFound(LocalHubError):  # not a branch, tag or commit of the repo
    status, code = 404, "RevisionNotFound"


class EntryNotFound(LocalHubError):  # no file or folder at that path in that revision
    status, code = 404, "EntryNotFound"


class Unauthorized(LocalHubError):  # no token where one is needed, or a token the server does not know
    status = 401


class Forbidden(LocalHubError):  # not allowed to this token, or refused by the Hub (default branch)
    status = 403


class Conflict(LocalHubError):  # the repo, branch or tag already exists
    status = 409


class PreconditionFailed(LocalHubError):  # the branch moved since the client's parentCommit
    status = 412


class TooLarge(LocalHubError):  # a body over the limit (refused before it is read when it is announced)
    status = 413


class Reply(LocalHubError):
    """An answer with a status of its own (416 with its Content-Range, 500, an injected fault...)."""

    def __init__(
        self, status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None
    ):
        super().__init__(message)
        self.status, self.code, self.headers = status, code, headers or {}
