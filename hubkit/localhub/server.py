"""A loopback HTTP server that speaks the part of the Hugging Face Hub API the real clients use.

``huggingface_hub`` (and through it transformers, peft and datasets) can create repos, commit
regular and LFS files, tag, branch, list and download against it, with the Hub's status codes
and ``X-Error-Code`` headers so the client raises its usual exceptions. Content lives in a
:class:`~hubkit.localhub.storage.HubStore`, so a restarted server on the same root serves the
same repos.

Not implemented: pull requests, Xet storage (clients must run with ``HF_HUB_DISABLE_XET=1``),
multipart LFS, pagination (every listing is one page), access control (any token may write
anywhere; reads need none).
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import logging
import socket
import socketserver
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import yaml

from hubkit.localhub.faults import Faults, Stats
from hubkit.localhub.storage import (
    LOCAL_ORGS,
    LOCAL_USER,
    REPO_TYPES,
    AddFile,
    BadRequest,
    Commit,
    Conflict,
    DeleteFile,
    DeleteFolder,
    Entry,
    EntryNotFound,
    Forbidden,
    HubStore,
    LocalHubError,
    Operation,
    PreconditionFailed,
    RepoKey,
    RepoNotFound,
    RevisionNotFound,
    folder_oid,
    folders_of,
    iter_chunks,
    lfs_entry,
    upload_mode,
)

logger = logging.getLogger(__name__)

_API_TYPES = {f"{t}s": t for t in REPO_TYPES}  # "models" -> "model"
_URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
_REPO_ACTIONS = {"revision", "preupload", "commit", "commits", "refs", "tag", "branch", "tree", "paths-info"}
_ERRORS: dict[type[LocalHubError], tuple[int, str | None]] = {
    RepoNotFound: (404, "RepoNotFound"),
    RevisionNotFound: (404, "RevisionNotFound"),
    EntryNotFound: (404, "EntryNotFound"),
    Conflict: (409, None),
    BadRequest: (400, None),
    PreconditionFailed: (412, None),
    Forbidden: (403, None),
}
_NO_TOKEN = "Invalid credentials in Authorization header"
_LFS_JSON = "application/vnd.git-lfs+json"
_READ_CHUNK = 1024 * 1024

# --------------------------------------------------------------------------- HTTP plumbing


class _Reply(Exception):
    """An HTTP error answer, raised anywhere in a handler and sent by the dispatcher."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        summary: str | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, headers or {}
        self.summary = summary or message.splitlines()[0]  # the X-Error-Message header


class _Drop(Exception):
    """Close the connection without answering (an injected network failure)."""


class _Interrupted(Exception):
    """An injected fault stopped reading an upload part-way."""


class _Body:
    """The request body, read at most once, as bytes or as a stream (Content-Length or chunked)."""

    def __init__(self, handler: BaseHTTPRequestHandler, on_bytes: Callable[[int], None] | None = None):
        self._rfile = handler.rfile
        self._length = handler.headers.get("Content-Length")
        self._chunked = "chunked" in handler.headers.get("Transfer-Encoding", "").lower()
        self._on_bytes = on_bytes
        self._stream: Iterator[bytes] | None = None
        self.done = not self._chunked and int(self._length or 0) == 0

    def chunks(self) -> Iterator[bytes]:
        """The body as a stream; resumable, so :meth:`drain` can finish what a consumer left."""
        if self._stream is None:
            raw = self._read_chunked() if self._chunked else self._read_length(int(self._length or 0))
            self._stream = self._count(raw)
        return self._stream

    def read(self) -> bytes:
        return b"".join(self.chunks())

    def drain(self) -> None:
        for _ in self.chunks():
            pass

    def _count(self, raw: Iterator[bytes]) -> Iterator[bytes]:
        for chunk in raw:
            if self._on_bytes is not None:
                self._on_bytes(len(chunk))
            yield chunk
        self.done = True

    def _read_length(self, remaining: int) -> Iterator[bytes]:
        while remaining > 0:
            chunk = self._rfile.read(min(_READ_CHUNK, remaining))
            if not chunk:
                raise ConnectionError("client closed the connection mid-body")
            remaining -= len(chunk)
            yield chunk

    def _read_chunked(self) -> Iterator[bytes]:
        while True:
            size = int(self._rfile.readline(1024).split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self._rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return
            yield from self._read_length(size)
            self._rfile.readline(8)  # CRLF after each chunk


def _fail_after(chunks: Iterator[bytes], limit: int) -> Iterator[bytes]:
    """Pass ``limit`` bytes through, then raise :class:`_Interrupted` (leaving ``chunks`` resumable)."""
    passed = 0
    for chunk in chunks:
        if passed + len(chunk) > limit:
            if limit > passed:
                yield chunk[: limit - passed]
            raise _Interrupted(f"injected fault: upload interrupted after {limit} bytes")
        passed += len(chunk)
        yield chunk


def _truthy(query: dict[str, list[str]], name: str) -> bool:
    return (query.get(name) or ["false"])[0].lower() in ("1", "true", "yes")


def _parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``(start, length)`` for a single ``bytes=`` range; None means "send it all"; raises on 416."""
    if not header or not header.startswith("bytes=") or "," in header:
        return None
    first, _, last = header[len("bytes=") :].strip().partition("-")
    try:
        if first == "":
            start = max(size - int(last), 0)
            end = size - 1
        else:
            start = int(first)
            end = min(int(last), size - 1) if last else size - 1
    except ValueError:
        return None
    if start >= size or end < start:
        raise _Reply(
            416,
            f"range {header} not satisfiable for {size} bytes",
            headers={"Content-Range": f"bytes */{size}"},
        )
    return start, end - start + 1


def _front_matter(text: str) -> dict[str, Any] | None:
    """The YAML header of a model/dataset card, or None when it has none; raises yaml.YAMLError."""
    if not text.startswith("---"):
        return None
    end = text.find("\n---", 3)
    if end < 0:
        return None
    data = yaml.safe_load(text[3:end])
    return data if isinstance(data, dict) else None


def _entry_json(path: str, entry: Entry) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "file", "oid": entry.oid, "size": entry.size, "path": path}
    if entry.lfs:
        out["lfs"] = {"oid": entry.lfs, "size": entry.size, "pointerSize": len(entry.pointer or b"")}
    return out


def _commit_json(commit: Commit) -> dict[str, Any]:
    return {
        "id": commit.id,
        "title": commit.title,
        "message": commit.message,
        "authors": [{"user": commit.author, "avatar": None}],
        "date": commit.date,
    }


# --------------------------------------------------------------------------- request handler


class _Handler(BaseHTTPRequestHandler):
    """Routes one request to a handler method; errors become Hub-style JSON answers."""

    protocol_version = "HTTP/1.1"
    server_version = "hubkit-localhub/1"
    timeout = 120
    disable_nagle_algorithm = True  # headers and body go out in separate writes: no 40 ms stalls
    server: _Server

    def do_GET(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def end_headers(self) -> None:
        self.answered = True
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s - %s", self.address_string(), format % args)  # request line only, never headers

    # ---- dispatch

    @property
    def hub(self) -> LocalHub:
        return self.server.hub

    @property
    def store(self) -> HubStore:
        return self.server.hub.store

    def _dispatch(self) -> None:
        self.hub.stats.add(requests=1)
        url = urlsplit(self.path)
        self.query = parse_qs(url.query)
        self.body = _Body(self)
        self.answered = False
        try:
            self._route([unquote(s) for s in url.path.split("/")[1:]])()
        except (_Drop, ConnectionError, TimeoutError):
            self.close_connection = True
            return
        except LocalHubError as exc:
            status, code = _ERRORS.get(type(exc), (400, None))
            self._answer_error(_Reply(status, str(exc), code))
        except _Reply as exc:
            self._answer_error(exc)
        except Exception:
            logger.exception("localhub: internal error on %s %s", self.command, url.path)
            self._answer_error(_Reply(500, "internal error in hubkit localhub (see its log)"))
        if not self.body.done:
            self.close_connection = True  # an unread body would be parsed as the next request

    def _route(self, segs: list[str]) -> Callable[[], None]:
        if segs[:1] == ["api"]:
            return self._route_api(segs[1:])
        if segs[:2] == ["_localhub", "lfs"]:
            return self._route_lfs(segs[2:])
        return self._route_repo_url(segs)

    def _route_api(self, segs: list[str]) -> Callable[[], None]:
        method = self.command
        fixed: dict[tuple[str, str], Callable[[], None]] = {
            ("GET", "whoami-v2"): self._whoami,
            ("POST", "validate-yaml"): self._validate_yaml,
            ("POST", "repos/create"): self._create_repo,
            ("DELETE", "repos/delete"): self._delete_repo,
        }
        if (method, "/".join(segs)) in fixed:
            return fixed[(method, "/".join(segs))]
        if segs[:1] == ["telemetry"]:
            return lambda: self._send_json(200, {})
        if segs and segs[0] in _API_TYPES and len(segs) > 1:
            repo, tail = self._split_repo(_API_TYPES[segs[0]], segs[1:])
            return self._route_repo_api(method, repo, tail)
        raise _Reply(404, f"hubkit localhub does not serve {method} /api/{'/'.join(segs)}")

    def _route_repo_api(self, method: str, repo: RepoKey, tail: list[str]) -> Callable[[], None]:
        self.store.repo_meta(repo)  # RepoNotFound before anything else, as on the Hub
        action, args = (tail[0], tail[1:]) if tail else ("", [])
        table: dict[tuple[str, str], Callable[..., None]] = {
            ("GET", ""): self._repo_info,
            ("GET", "revision"): self._repo_info,
            ("POST", "preupload"): self._preupload,
            ("POST", "commit"): self._commit,
            ("GET", "commits"): self._list_commits,
            ("GET", "refs"): self._list_refs,
            ("POST", "tag"): self._create_tag,
            ("DELETE", "tag"): self._delete_tag,
            ("POST", "branch"): self._create_branch,
            ("DELETE", "branch"): self._delete_branch,
            ("GET", "tree"): self._tree,
            ("POST", "paths-info"): self._paths_info,
        }
        handler = table.get((method, action))
        if handler is None:
            raise _Reply(404, f"hubkit localhub does not serve {method} .../{repo.id}/{'/'.join(tail)}")
        return lambda: handler(repo, *args)

    def _route_lfs(self, segs: list[str]) -> Callable[[], None]:
        if self.command == "POST" and segs == ["verify"]:
            return self._lfs_verify
        if self.command == "PUT" and len(segs) == 1:
            return lambda: self._lfs_upload(segs[0])
        raise _Reply(404, "unknown LFS transfer URL")

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
            return lambda: self._lfs_batch(repo)
        resolve = next((i for i, s in enumerate(segs[:3]) if s == "resolve" and i > 0), None)
        if resolve is not None and len(segs) > resolve + 2 and self.command in ("GET", "HEAD"):
            repo = RepoKey(repo_type, "/".join(segs[:resolve]))
            return lambda: self._resolve(repo, segs[resolve + 1], "/".join(segs[resolve + 2 :]))
        raise _Reply(404, f"hubkit localhub does not serve {self.command} {urlsplit(self.path).path}")

    @staticmethod
    def _split_repo(repo_type: str, segs: list[str]) -> tuple[RepoKey, list[str]]:
        """``ns/name/action/...`` → repo and tail; a lone ``name`` (canonical id) is never found."""
        if len(segs) >= 2 and segs[1] not in _REPO_ACTIONS:
            return RepoKey(repo_type, f"{segs[0]}/{segs[1]}"), segs[2:]
        return RepoKey(repo_type, segs[0]), segs[1:]

    # ---- helpers

    @property
    def base_url(self) -> str:
        """The URL prefix the client used, so returned URLs point back to the same endpoint."""
        return f"http://{self.headers.get('Host') or self.hub.netloc}"

    def _repo_url(self, repo: RepoKey) -> str:
        return f"{self.base_url}/{_URL_PREFIX[repo.type]}{repo.id}"

    def _require_token(self) -> None:
        auth = self.headers.get("Authorization", "")
        if self.hub.require_token and not (auth.startswith("Bearer ") and auth[len("Bearer ") :].strip()):
            # The Hub's own summary for a bad token: the client then reports a 401, not "repo not found".
            message = "hubkit localhub needs a bearer token (any value) to write: pass token= or set HF_TOKEN"
            raise _Reply(401, message, summary=_NO_TOKEN)

    def _json_body(self) -> Any:
        data = self.body.read()
        try:
            return json.loads(data) if data else {}
        except json.JSONDecodeError as exc:
            raise BadRequest(f"request body is not valid JSON: {exc}") from exc

    def _check_fault(self, point: str) -> None:
        fault = self.hub.faults.take(point)
        if fault is None:
            return
        self.body.drain()
        if fault.drop:
            raise _Drop()
        raise _Reply(fault.status, f"injected fault at {point}")

    def _send_json(
        self, status: int, obj: Any, headers: dict[str, str] | None = None, ctype: str = ""
    ) -> None:
        self._send(status, json.dumps(obj).encode(), ctype or "application/json", headers)

    def _send(self, status: int, body: bytes, ctype: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _answer_error(self, reply: _Reply) -> None:
        """Send ``reply``, unless an answer has begun: then the connection is the only thing to end."""
        if self.answered:
            self.close_connection = True
        else:
            self._send_error(reply)

    def _send_error(self, reply: _Reply) -> None:
        headers = dict(reply.headers)
        headers["X-Error-Message"] = reply.summary.encode("ascii", "replace").decode()
        if reply.code:
            headers["X-Error-Code"] = reply.code
        if not self.body.done:
            headers["Connection"] = "close"
        self._send_json(reply.status, {"error": reply.message}, headers)

    # ---- account and repos

    def _whoami(self) -> None:
        self._require_token()
        orgs = [{"type": "org", "name": o, "fullname": o, "roleInOrg": "admin"} for o in LOCAL_ORGS]
        access = {"displayName": "hubkit-local", "role": "write"}
        self._send_json(
            200,
            {
                "type": "user",
                "id": "000000000000000000000000",
                "name": LOCAL_USER,
                "fullname": "hubkit local hub",
                "email": None,
                "emailVerified": False,
                "isPro": False,
                "canPay": False,
                "orgs": orgs,
                "auth": {"type": "access_token", "accessToken": access},
            },
        )

    def _validate_yaml(self) -> None:
        content = self._json_body().get("content", "")
        try:
            _front_matter(content)
        except yaml.YAMLError as exc:
            message = f"Invalid YAML in README.md metadata: {exc}"
            self._send_json(400, {"error": message, "errors": [{"message": message}], "warnings": []})
            return
        self._send_json(200, {"errors": [], "warnings": []})

    def _create_repo(self) -> None:
        self._require_token()
        body = self._json_body()
        repo = self._repo_from_body(body)
        private = bool(body.get("private")) or body.get("visibility") == "private"
        try:
            self.store.create_repo(repo, private=private, sdk=body.get("sdk"))
        except Conflict as exc:
            self._send_json(
                409, {"error": str(exc), "url": self._repo_url(repo)}, {"X-Error-Message": str(exc)}
            )
            return
        self._send_json(200, {"url": self._repo_url(repo), "name": repo.id, "id": repo.id})

    def _delete_repo(self) -> None:
        self._require_token()
        repo = self._repo_from_body(self._json_body())
        self.store.delete_repo(repo)
        self._send_json(200, {})

    @staticmethod
    def _repo_from_body(body: dict[str, Any]) -> RepoKey:
        """The repo a create/delete call names; no organization means the local user, as on the Hub."""
        return RepoKey(
            body.get("type") or "model", f"{body.get('organization') or LOCAL_USER}/{body.get('name')}"
        )

    def _repo_info(self, repo: RepoKey, revision: str | None = None) -> None:
        meta = self.store.repo_meta(repo)
        commit = self.store.resolve(repo, revision)
        siblings = []
        for path, entry in sorted(commit.tree.items()):
            sibling: dict[str, Any] = {"rfilename": path, "size": entry.size, "blobId": entry.oid}
            if entry.lfs:
                sibling["lfs"] = {
                    "sha256": entry.lfs,
                    "size": entry.size,
                    "pointerSize": len(entry.pointer or b""),
                }
            siblings.append(sibling)
        card = self._card_data(commit)
        info: dict[str, Any] = {
            "_id": meta["_id"],
            "id": repo.id,
            "author": repo.id.split("/")[0],
            "sha": commit.id,
            "createdAt": meta["createdAt"],
            "lastModified": commit.date,
            "private": meta["private"],
            "gated": False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": [t for t in card.get("tags") or [] if isinstance(t, str)] if card else [],
            "siblings": siblings,
            "usedStorage": sum(e.size for e in commit.tree.values()),
        }
        if card is not None:
            info["cardData"] = card
        if repo.type == "space":
            info["sdk"] = meta.get("sdk")
        self._send_json(200, info)

    def _card_data(self, commit: Commit) -> dict[str, Any] | None:
        entry = commit.tree.get("README.md")
        if entry is None or entry.lfs:
            return None
        try:
            return _front_matter(self.store.blob_path(entry).read_text(errors="replace"))
        except yaml.YAMLError:
            return None

    # ---- refs

    def _list_refs(self, repo: RepoKey) -> None:
        refs = self.store.refs(repo)
        branches = [
            {"name": n, "ref": f"refs/heads/{n}", "targetCommit": c} for n, c in sorted(refs.branches.items())
        ]
        tags = [
            {"name": n, "ref": f"refs/tags/{n}", "targetCommit": t["commit"]}
            for n, t in sorted(refs.tags.items())
        ]
        self._send_json(200, {"branches": branches, "converts": [], "tags": tags, "pullRequests": []})

    def _create_tag(self, repo: RepoKey, revision: str) -> None:
        self._require_token()
        body = self._json_body()
        tag = body.get("tag") or ""
        commit_id = self.store.create_tag(repo, tag, revision, body.get("message") or "")
        self._send_json(200, {"name": tag, "ref": f"refs/tags/{tag}", "targetCommit": commit_id})

    def _delete_tag(self, repo: RepoKey, tag: str) -> None:
        self._require_token()
        self.store.delete_tag(repo, tag)
        self._send_json(200, {})

    def _create_branch(self, repo: RepoKey, branch: str) -> None:
        self._require_token()
        body = self._json_body()
        if body.get("emptyBranch"):
            raise BadRequest("hubkit localhub does not create empty branches; give a starting revision")
        commit_id = self.store.create_branch(repo, branch, body.get("startingPoint"))
        self._send_json(200, {"name": branch, "ref": f"refs/heads/{branch}", "targetCommit": commit_id})

    def _delete_branch(self, repo: RepoKey, branch: str) -> None:
        self._require_token()
        self.store.delete_branch(repo, branch)
        self._send_json(200, {})

    # ---- history and trees

    def _list_commits(self, repo: RepoKey, revision: str) -> None:
        self._send_json(200, [_commit_json(c) for c in self.store.history(repo, revision)])

    def _tree(self, repo: RepoKey, revision: str, *path: str) -> None:
        commit = self.store.resolve(repo, revision)
        folder = "/".join(path).strip("/")
        recursive, expand = _truthy(self.query, "recursive"), _truthy(self.query, "expand")
        entries = self._list_folder(commit, folder, recursive)
        self._send_json(200, [self._path_json(repo, commit, p, expand) for p in entries])

    def _list_folder(self, commit: Commit, folder: str, recursive: bool) -> list[str]:
        folders = folders_of(commit.tree)
        if folder and folder not in folders:
            raise _Reply(404, f"folder {folder!r} not found at {commit.id}", "EntryNotFound")
        prefix = f"{folder}/" if folder else ""

        def wanted(path: str) -> bool:
            return path.startswith(prefix) and (recursive or "/" not in path[len(prefix) :])

        return sorted(d for d in folders if wanted(d)) + sorted(p for p in commit.tree if wanted(p))

    def _paths_info(self, repo: RepoKey, revision: str) -> None:
        commit = self.store.resolve(repo, revision)
        paths, expand = self._paths_info_request()
        folders = folders_of(commit.tree)
        found = [p.strip("/") for p in paths if p.strip("/") in commit.tree or p.strip("/") in folders]
        self._send_json(200, [self._path_json(repo, commit, p, expand) for p in dict.fromkeys(found)])

    def _paths_info_request(self) -> tuple[list[str], bool]:
        """``paths`` and ``expand`` from the form body huggingface_hub sends (or from JSON)."""
        if "json" in self.headers.get("Content-Type", ""):
            body = self._json_body()
            paths, expand = body.get("paths", []), bool(body.get("expand"))
        else:
            form = parse_qs(self.body.read().decode())
            paths, expand = form.get("paths", []), _truthy(form, "expand")
        return ([paths] if isinstance(paths, str) else list(paths)), expand

    def _path_json(self, repo: RepoKey, commit: Commit, path: str, expand: bool) -> dict[str, Any]:
        entry = commit.tree.get(path)
        if entry is not None:
            out = _entry_json(path, entry)
        else:
            out = {"type": "directory", "oid": folder_oid(commit.tree, path), "size": 0, "path": path}
        if expand:
            last = self.store.last_change(repo, commit, path)
            out["lastCommit"] = {"id": last.id, "title": last.title, "date": last.date}
        return out

    # ---- uploads and commits

    def _preupload(self, repo: RepoKey, revision: str) -> None:
        self._require_token()
        body = self._json_body()
        self._check_fault("preupload")
        commit = self.store.resolve(repo, revision)
        files = []
        for item in body.get("files", []):
            path = item["path"]
            sample = base64.b64decode(item.get("sample") or "")
            remote = commit.tree.get(path)
            files.append(
                {
                    "path": path,
                    "uploadMode": upload_mode(path, int(item.get("size", 0)), sample),
                    "shouldIgnore": False,
                    "oid": (remote.lfs or remote.oid) if remote else None,
                }
            )
        self._send_json(200, {"files": files, "commitOid": commit.id})

    def _lfs_batch(self, repo: RepoKey) -> None:
        self._require_token()
        body = self._json_body()
        self.store.repo_meta(repo)
        self._check_fault("lfs_batch")
        if body.get("operation") != "upload":
            raise BadRequest("hubkit localhub only serves LFS uploads; download files through /resolve/")
        objects = [
            self._lfs_batch_object(str(o.get("oid")), int(o.get("size", -1))) for o in body.get("objects", [])
        ]
        self._send_json(
            200, {"transfer": "basic", "objects": objects, "hash_algo": "sha256"}, ctype=_LFS_JSON
        )

    def _lfs_batch_object(self, oid: str, size: int) -> dict[str, Any]:
        """Upload instructions for one object, or none when its bytes are already stored."""
        stored = self.store.lfs_size(oid)
        if stored == size:
            return {"oid": oid, "size": size}
        if stored is not None or size < 0:
            return {
                "oid": oid,
                "size": size,
                "error": {"code": 422, "message": f"size {size} does not match"},
            }
        upload = {"href": f"{self.base_url}/_localhub/lfs/{oid}?size={size}", "header": {}}
        verify = {"href": f"{self.base_url}/_localhub/lfs/verify"}
        return {
            "oid": oid,
            "size": size,
            "authenticated": True,
            "actions": {"upload": upload, "verify": verify},
        }

    def _lfs_upload(self, oid: str) -> None:
        try:
            size = int(self.query["size"][0])
        except (KeyError, ValueError) as exc:
            raise BadRequest("LFS upload URL lacks its size; ask the batch endpoint for a new one") from exc
        self.body = _Body(self, on_bytes=lambda n: self.hub.stats.add(lfs_bytes_received=n))
        fault = self.hub.faults.take("lfs_upload")
        chunks = self.body.chunks()
        if fault is not None:
            chunks = _fail_after(chunks, fault.after_bytes or 0)
        try:
            self.store.put_lfs(oid, size, chunks)
        except _Interrupted as exc:
            self.body.drain()
            if fault is not None and fault.drop:
                raise _Drop() from exc
            raise _Reply(fault.status if fault else 500, str(exc)) from exc
        finally:
            self.hub.stats.add(lfs_uploads=1)
        self._send_json(200, {})

    def _lfs_verify(self) -> None:
        body = self._json_body()
        oid, size = str(body.get("oid")), body.get("size")
        if self.store.lfs_size(oid) != size:
            raise _Reply(404, f"LFS object {oid} ({size} bytes) is not stored")
        self._send_json(200, {})

    def _commit(self, repo: RepoKey, revision: str) -> None:
        self._require_token()
        if _truthy(self.query, "create_pr"):
            raise BadRequest("hubkit localhub does not support pull requests (create_pr=True)")
        lines = self.body.read().splitlines()
        self._check_fault("commit")
        header, operations = self._parse_commit(lines)
        branch = revision.removeprefix("refs/heads/")
        commit = self.store.apply_commit(
            repo,
            branch,
            operations,
            title=header.get("summary") or "",
            message=header.get("description") or "",
            parent=header.get("parentCommit"),
        )
        self.hub.stats.add(commits=1)
        self._send_json(
            200,
            {
                "success": True,
                "commitOid": commit.id,
                "commitUrl": f"{self._repo_url(repo)}/commit/{commit.id}",
                "commitMessage": commit.title,
                "hookOutput": "",
                "pullRequestUrl": None,
            },
        )

    def _parse_commit(self, lines: list[bytes]) -> tuple[dict[str, Any], list[Operation]]:
        """Header and operations of an NDJSON commit; LFS pointers are checked before anything is stored."""
        items = []
        for raw in lines:
            if raw.strip():
                try:
                    items.append(json.loads(raw))
                except json.JSONDecodeError as exc:
                    raise BadRequest(f"commit payload line is not JSON: {exc}") from exc
        if not items or items[0].get("key") != "header":
            raise BadRequest("commit payload must start with a 'header' line")
        header = items[0].get("value") or {}
        if not header.get("summary"):
            raise BadRequest("commit message (header.summary) must not be empty")
        pending = [self._parse_operation(item.get("key"), item.get("value") or {}) for item in items[1:]]
        ops = [
            op if not isinstance(op, tuple) else AddFile(op[0], self.store.put_regular(op[1]))
            for op in pending
        ]
        return header, ops

    def _parse_operation(self, key: str | None, value: dict[str, Any]) -> Operation | tuple[str, bytes]:
        """One commit line; regular content comes back as ``(path, bytes)`` to be stored later."""
        path = str(value.get("path", ""))
        if key == "file":
            return path, self._file_content(path, value)
        if key == "lfsFile":
            oid = str(value.get("oid", ""))
            stored = self.store.lfs_size(oid)
            if stored is None:
                raise BadRequest(
                    f"LFS object {oid} for {path!r} was never uploaded: upload it through the LFS batch API "
                    "before committing a pointer to it"
                )
            if value.get("size") is not None and int(value["size"]) != stored:
                raise BadRequest(f"LFS object {oid} for {path!r} has {stored} bytes, not {value['size']}")
            return AddFile(path, lfs_entry(oid, stored))
        if key == "deletedFile":
            return DeleteFile(path)
        if key == "deletedFolder":
            return DeleteFolder(path)
        raise BadRequest(
            f"unsupported commit operation {key!r} (hubkit localhub knows file, lfsFile, deleted*)"
        )

    @staticmethod
    def _file_content(path: str, value: dict[str, Any]) -> bytes:
        content = value.get("content", "")
        if value.get("encoding", "utf-8") != "base64":
            return content.encode()
        try:
            return base64.b64decode(content, validate=True)
        except binascii.Error as exc:
            raise BadRequest(f"content of {path!r} is not valid base64") from exc

    # ---- downloads

    def _resolve(self, repo: RepoKey, revision: str, path: str) -> None:
        commit = self.store.resolve(repo, revision)
        entry = commit.tree.get(path)
        if entry is None:
            raise _Reply(
                404,
                f"Entry not found: {path!r} at {commit.id}",
                "EntryNotFound",
                {"X-Repo-Commit": commit.id},
            )
        blob = self.store.blob_path(entry)
        if not blob.is_file():
            raise _Reply(500, f"the store lost the content of {path!r} ({blob}); the hub root is damaged")
        rng = _parse_range(self.headers.get("Range"), entry.size)
        start, length = rng if rng is not None else (0, entry.size)
        etag = f'"{entry.lfs or entry.oid}"'
        name = quote(path.rsplit("/", 1)[-1])
        self.send_response(206 if rng is not None else 200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(length))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", etag)
        self.send_header("X-Repo-Commit", commit.id)
        self.send_header("Content-Disposition", f"inline; filename*=UTF-8''{name}; filename=\"{name}\"")
        if entry.lfs:
            self.send_header("X-Linked-Etag", etag)
            self.send_header("X-Linked-Size", str(entry.size))
        if rng is not None:
            self.send_header("Content-Range", f"bytes {start}-{start + length - 1}/{entry.size}")
        self.end_headers()
        if self.command == "GET":
            for chunk in iter_chunks(blob, start, length):
                self.wfile.write(chunk)


# --------------------------------------------------------------------------- server and lifecycle


class _Server(ThreadingHTTPServer):
    """Threaded server that can close its open keep-alive connections when stopped."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], hub: LocalHub) -> None:
        self.hub = hub
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)  # skip HTTPServer's getfqdn (a DNS lookup)
        self.server_name, self.server_port = self.server_address[:2]

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def _loopback_host(host: str) -> str:
    """The IPv4 loopback address to bind; anything reachable from other machines is refused."""
    address = "127.0.0.1" if host == "localhost" else host
    try:
        ok = ipaddress.ip_address(address).is_loopback and ipaddress.ip_address(address).version == 4
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(
            f"hubkit localhub only listens on IPv4 loopback (127.x.x.x or localhost), not {host!r}"
        )
    return address


class LocalHub:
    """A local Hub endpoint over ``root``, served from a background thread.

    Use as a context manager (``with LocalHub(tmp_path) as hub: ... hub.endpoint``) or call
    :meth:`start` / :meth:`stop`. ``faults`` injects failures and ``stats`` counts traffic, for
    tests. ``require_token`` makes writes need a bearer token (any value), as the Hub does.
    """

    def __init__(
        self,
        root: str | Path,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        require_token: bool = True,
    ) -> None:
        self.root = Path(root)
        self.host = _loopback_host(host)
        self.port = port
        self.require_token = require_token
        self.store = HubStore(self.root)
        self.faults = Faults()
        self.stats = Stats()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def netloc(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def endpoint(self) -> str:
        """``http://127.0.0.1:PORT``: what ``HF_ENDPOINT`` / ``endpoint=`` should be set to."""
        if self._server is None:
            raise RuntimeError("LocalHub is not running: call start() or use it as a context manager")
        return f"http://{self.netloc}"

    @property
    def url(self) -> str:
        return self.endpoint

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> LocalHub:
        """Bind the port (``port=0`` picks a free one) and serve in a daemon thread."""
        if self._server is not None:
            return self
        self._server = _Server((self.host, self.port), self)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"localhub:{self.port}",
            daemon=True,
        )
        self._thread.start()
        logger.info("hubkit localhub serving %s on %s", self.root, self.endpoint)
        return self

    def stop(self) -> None:
        """Stop accepting requests, close open connections and wait for the serving thread."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.close_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        logger.info("hubkit localhub on port %d stopped", self.port)

    def wait(self) -> None:
        """Block until :meth:`stop` is called from elsewhere (Ctrl-C raises KeyboardInterrupt), for a CLI."""
        while self._thread is not None and self._thread.is_alive():
            self._thread.join(timeout=0.5)

    def __enter__(self) -> LocalHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = self.endpoint if self.running else "stopped"
        return f"LocalHub(root={str(self.root)!r}, {state})"


def serve(root: str | Path, host: str = "127.0.0.1", port: int = 0) -> LocalHub:
    """Start a :class:`LocalHub` on ``root`` and return it (running; call ``.stop()`` when done)."""
    return LocalHub(root, host, port).start()
