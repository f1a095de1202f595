"""Which route method answers which request: the Hub API's URL shapes, in one place."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from hubkit.localhub.connections import SocketReader, SocketWriter
from hubkit.localhub.http import Reply
from hubkit.localhub.objects import REPO_TYPES, RepoKey
from hubkit.localhub.routes_files import FileRoutes
from hubkit.localhub.routes_repos import RepoRoutes
from hubkit.localhub.routes_uploads import UploadRoutes

if TYPE_CHECKING:
    from hubkit.localhub.server import LocalHub

_API_TYPES = {f"{t}s": t for t in REPO_TYPES}  # "models" -> "model"
_REPO_ACTIONS = {"revision", "preupload", "commit", "commits", "refs", "tag", "branch", "tree", "paths-info"}


class Handler(RepoRoutes, FileRoutes, UploadRoutes):
    """The local Hub's request handler: routes the URL to one of the mixins' methods."""

    def _route(self, segs: list[str]) -> Callable[[], None]:
        if segs[:1] == ["api"]:
            return self._route_api(segs[1:])
        if segs[:2] == ["_localhub", "lfs"]:
            return self._route_lfs(segs[2:])
        return self._route_repo_url(segs)

    def _route_api(self, segs: list[str]) -> Callable[[], None]:
        method = self.command
        fixed: dict[tuple[str, str], Callable[[], None]] = {
            ("GET", "whoami-v2"): self.whoami,
            ("POST", "validate-yaml"): self.validate_yaml,
            ("POST", "repos/create"): self.create_repo,
            ("DELETE", "repos/delete"): self.delete_repo,
        }
        if (method, "/".join(segs)) in fixed:
            return fixed[(method, "/".join(segs))]
        if segs[:1] == ["telemetry"]:
            return lambda: self.send_json(200, {})
        if segs and segs[0] in _API_TYPES and len(segs) > 1:
            repo, tail = _split_repo(_API_TYPES[segs[0]], segs[1:])
            return self._route_repo_api(method, repo, tail)
        raise Reply(404, f"hubkit localhub does not serve {method} /api/{'/'.join(segs)}")

    def _route_repo_api(self, method: str, repo: RepoKey, tail: list[str]) -> Callable[[], None]:
        self.readable(repo)  # RepoNotFound before anything else, as on the Hub (private repos included)
        action, args = (tail[0], tail[1:]) if tail else ("", [])
        table: dict[tuple[str, str], Callable[..., None]] = {
            ("GET", ""): self.repo_info,
            ("GET", "revision"): self.repo_info,
            ("POST", "preupload"): self.preupload,
            ("POST", "commit"): self.commit,
            ("GET", "commits"): self.list_commits,
            ("GET", "refs"): self.list_refs,
            ("POST", "tag"): self.create_tag,
            ("DELETE", "tag"): self.delete_tag,
            ("POST", "branch"): self.create_branch,
            ("DELETE", "branch"): self.delete_branch,
            ("GET", "tree"): self.tree,
            ("POST", "paths-info"): self.paths_info,
        }
        handler = table.get((method, action))
        if handler is None:
            raise Reply(404, f"hubkit localhub does not serve {method} .../{repo.id}/{'/'.join(tail)}")
        return lambda: handler(repo, *args)

    def _route_lfs(self, segs: list[str]) -> Callable[[], None]:
        if self.command == "POST" and segs == ["verify"]:
            return self.lfs_verify
        if self.command == "PUT" and len(segs) == 1:
            return lambda: self.lfs_upload(segs[0])
        raise Reply(404, "unknown LFS transfer URL")

    def _route_repo_url(self, segs: list[str]) -> Callable[[], None]:
        """``/[datasets/|spaces/]ns/name.git/info/lfs/objects/batch`` and ``.../resolve/rev/path``."""
        repo_type = "model"
        if segs[:1] in (["datasets"], ["spaces"]):
            repo_type, segs = segs[0][:-1], segs[1:]
        git = next((i for i, s in enumerate(segs[:2]) if s.endswith(".git")), None)
        if (
            git is not None
            and segs[git + 1 :] == ["info", "lfs", "objects", "batch"]
            and self.command == "POST"
        ):
            repo = RepoKey(repo_type, "/".join(segs[: git + 1])[: -len(".git")])
            return lambda: self.lfs_batch(repo)
        resolve = next((i for i, s in enumerate(segs[:3]) if s == "resolve" and i > 0), None)
        if resolve is not None and len(segs) > resolve + 2 and self.command in ("GET", "HEAD"):
            repo = RepoKey(repo_type, "/".join(segs[:resolve]))
            return lambda: self.resolve_file(repo, segs[resolve + 1], "/".join(segs[resolve + 2 :]))
        raise Reply(404, f"hubkit localhub does not serve {self.command} {urlsplit(self.path).path}")


def _split_repo(repo_type: str, segs: list[str]) -> tuple[RepoKey, list[str]]:
    """``ns/name/action/...`` → repo and tail; a lone ``name`` (canonical id) is never found."""
    if len(segs) >= 2 and segs[1] not in _REPO_ACTIONS:
        return RepoKey(repo_type, f"{segs[0]}/{segs[1]}"), segs[2:]
    return RepoKey(repo_type, segs[0]), segs[1:]


def serve_one(hub: LocalHub, sock: socket.socket, reader: SocketReader, address: tuple) -> bool:
    """Answer one request from `reader` on `sock`; whether the connection may stay open."""
    handler = Handler.__new__(Handler)
    handler.hub = hub
    handler.client_address = address
    handler.request = handler.connection = sock
    handler.rfile = reader
    handler.wfile = SocketWriter(sock)
    handler.close_connection = True
    handler.handle_one_request()
    return not handler.close_connection
