"""The Hub API the local Hub serves: which URL reaches which route, and the routes themselves.

Accounts and repos (whoami, create/delete, info, refs), reads of a revision (history, trees,
paths-info, downloads with ranges) and writes (preupload, the LFS batch/upload/verify protocol,
commits). LFS bytes enter only through a URL the batch endpoint issued to a caller allowed to
write to the repo (:class:`~hubkit.localhub.access.UploadTickets`); a commit can only point at LFS
objects the caller uploaded or can read in a repo holding them, so a sha256 alone never opens
someone else's private file.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import yaml

from hubkit.localhub.errors import (
    BadRequest,
    Conflict,
    EntryNotFound,
    LocalHubError,
    Reply,
    TooLarge,
    Unauthorized,
)
from hubkit.localhub.faults import Interrupted, fail_after
from hubkit.localhub.handler import Body, Drop, HandlerBase, front_matter, parse_range, truthy
from hubkit.localhub.objects import (
    REPO_TYPES,
    SHA256_RE,
    AddFile,
    Commit,
    DeleteFile,
    DeleteFolder,
    Entry,
    Operation,
    RepoKey,
    folder_oid,
    folders_of,
    lfs_entry,
    upload_mode,
)
from hubkit.localhub.storage import iter_chunks

_API_TYPES = {f"{t}s": t for t in REPO_TYPES}  # "models" -> "model"
_REPO_ACTIONS = {"revision", "preupload", "commit", "commits", "refs", "tag", "branch", "tree", "paths-info"}
_LFS_JSON = "application/vnd.git-lfs+json"
_REF_KINDS = {"tag": "tags", "branch": "branches"}


class Handler(HandlerBase):
    """The local Hub's request handler: the URL picks one of the route methods below."""

    # ---- routing

    def _route(self, segs: list[str]) -> Callable[[], None]:
        method = self.command
        if segs[:1] == ["api"]:
            return self._route_api(method, segs[1:])
        if segs[:2] == ["_localhub", "lfs"]:
            if method == "POST" and segs[2:] == ["verify"]:
                return self.lfs_verify
            if method == "PUT" and len(segs) == 3:
                return lambda: self.lfs_upload(segs[2])
            raise Reply(404, "unknown LFS transfer URL")
        return self._route_repo_url(method, segs)

    def _route_api(self, method: str, segs: list[str]) -> Callable[[], None]:
        fixed = {
            ("GET", "whoami-v2"): self.whoami,
            ("POST", "validate-yaml"): self.validate_yaml,
            ("POST", "repos/create"): self.create_repo,
            ("DELETE", "repos/delete"): self.delete_repo,
        }
        if (method, "/".join(segs)) in fixed:
            return fixed[(method, "/".join(segs))]
        if segs[:1] == ["telemetry"]:
            return lambda: self.send_json(200, {})
        if len(segs) > 1 and segs[0] in _API_TYPES:
            # ns/name/action/...; a lone `name` (a canonical id) is never found
            n = 2 if len(segs) >= 3 and segs[2] not in _REPO_ACTIONS else 1
            repo, tail = RepoKey(_API_TYPES[segs[0]], "/".join(segs[1 : 1 + n])), segs[1 + n :]
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
            ("GET", "commits"): lambda repo, rev: self.send_json(
                200, [_commit_json(c) for c in self.store.history(repo, rev)]
            ),
            ("GET", "refs"): self.list_refs,
            ("POST", "tag"): lambda repo, rev: self.create_ref(repo, "tag", rev),
            ("DELETE", "tag"): lambda repo, name: self.delete_ref(repo, "tag", name),
            ("POST", "branch"): lambda repo, name: self.create_ref(repo, "branch", name),
            ("DELETE", "branch"): lambda repo, name: self.delete_ref(repo, "branch", name),
            ("GET", "tree"): self.tree,
            ("POST", "paths-info"): self.paths_info,
        }
        handler = table.get((method, action))
        if handler is None:
            raise Reply(404, f"hubkit localhub does not serve {method} .../{repo.id}/{'/'.join(tail)}")
        return lambda: handler(repo, *args)

    def _route_repo_url(self, method: str, segs: list[str]) -> Callable[[], None]:
        """``/[datasets/|spaces/]ns/name.git/info/lfs/objects/batch`` and ``.../resolve/rev/path``."""
        repo_type = "model"
        if segs[:1] in (["datasets"], ["spaces"]):
            repo_type, segs = segs[0][:-1], segs[1:]
        git = next((i for i, s in enumerate(segs[:2]) if s.endswith(".git")), None)
        if git is not None and segs[git + 1 :] == ["info", "lfs", "objects", "batch"] and method == "POST":
            repo = RepoKey(repo_type, "/".join(segs[: git + 1])[: -len(".git")])
            return lambda: self.lfs_batch(repo)
        resolve = next((i for i, s in enumerate(segs[:3]) if s == "resolve" and i > 0), None)
        if resolve is not None and len(segs) > resolve + 2 and method in ("GET", "HEAD"):
            repo = RepoKey(repo_type, "/".join(segs[:resolve]))
            return lambda: self.resolve_file(repo, segs[resolve + 1], "/".join(segs[resolve + 2 :]))
        raise Reply(404, f"hubkit localhub does not serve {method} {urlsplit(self.path).path}")

    # ---- accounts and repos

    def whoami(self) -> None:
        identity = self.require_identity()
        orgs = [{"type": "org", "name": o, "fullname": o, "roleInOrg": "admin"} for o in identity.orgs]
        role = "write" if identity.write else "read"
        self.send_json(
            200,
            {
                "type": "user", "id": "0" * 24, "name": identity.user, "fullname": identity.user,
                "email": None, "emailVerified": False, "isPro": False, "canPay": False, "orgs": orgs,
                "auth": {"type": "access_token", "accessToken": {"displayName": "hubkit-local", "role": role}},
            },
        )  # fmt: skip

    def validate_yaml(self) -> None:
        content = self.json_object().get("content", "")
        try:
            front_matter(content if isinstance(content, str) else "")
        except yaml.YAMLError as exc:
            message = f"Invalid YAML in README.md metadata: {exc}"
            self.send_json(400, {"error": message, "errors": [{"message": message}], "warnings": []})
            return
        self.send_json(200, {"errors": [], "warnings": []})

    def create_repo(self) -> None:
        identity = self.require_identity()
        body = self.json_object()
        repo = self._repo_from_body(body, identity.user)
        self.require_write(repo, exists=False)
        private = body.get("private") is True or body.get("visibility") == "private"
        sdk = body.get("sdk") if isinstance(body.get("sdk"), str) else None
        try:
            self.store.create_repo(repo, private=private, sdk=sdk, author=identity.user)
        except Conflict as exc:
            self.send_json(409, {"error": str(exc), "url": self.repo_url(repo)}, {"X-Error-Message": str(exc)})
            return
        self.send_json(200, {"url": self.repo_url(repo), "name": repo.id, "id": repo.id})

    def delete_repo(self) -> None:
        repo = self._repo_from_body(self.json_object(), self.require_identity().user)
        self.require_write(repo)
        self.store.delete_repo(repo)
        self.send_json(200, {})

    @staticmethod
    def _repo_from_body(body: dict[str, Any], user: str) -> RepoKey:
        """The repo a create/delete call names; no organization means the caller's own namespace."""
        name, org, kind = body.get("name"), body.get("organization"), body.get("type") or "model"
        if not isinstance(name, str) or not name:
            raise BadRequest("the request must name the repo: 'name' is a non-empty string")
        if org is not None and not isinstance(org, str):
            raise BadRequest("'organization' must be a string")
        repo = RepoKey(kind, f"{org or user}/{name}")  # an unknown type is refused by RepoKey
        repo.validate_name()
        return repo

    def repo_info(self, repo: RepoKey, revision: str | None = None) -> None:
        meta = self.readable(repo)
        commit = self.store.resolve(repo, revision)
        siblings = []
        for path, entry in sorted(commit.tree.items()):
            sibling: dict[str, Any] = {"rfilename": path, "size": entry.size, "blobId": entry.oid}
            if entry.lfs:
                sibling["lfs"] = {"sha256": entry.lfs, "size": entry.size, "pointerSize": len(entry.pointer or b"")}
            siblings.append(sibling)
        card = self._card_data(commit)
        info: dict[str, Any] = {
            "_id": meta["_id"], "id": repo.id, "author": repo.namespace, "sha": commit.id,
            "createdAt": meta["createdAt"], "lastModified": commit.date, "private": meta["private"],
            "gated": False, "disabled": False, "downloads": 0, "likes": 0,
            "tags": [t for t in card.get("tags") or [] if isinstance(t, str)] if card else [],
            "siblings": siblings, "usedStorage": sum(e.size for e in commit.tree.values()),
        }  # fmt: skip
        if card is not None:
            info["cardData"] = card
        if repo.type == "space":
            info["sdk"] = meta.get("sdk")
        self.send_json(200, info)

    def _card_data(self, commit: Commit) -> dict[str, Any] | None:
        entry = commit.tree.get("README.md")
        if entry is None or entry.lfs:
            return None
        try:
            return front_matter(self.store.blob_path(entry).read_text(errors="replace"))
        except yaml.YAMLError:
            return None

    def list_refs(self, repo: RepoKey) -> None:
        refs = self.store.refs(repo)
        found = {
            kind: [
                {"name": n, "ref": f"refs/{prefix}/{n}", "targetCommit": t if kind == "branches" else t["commit"]}
                for n, t in sorted(refs[kind].items())
            ]
            for kind, prefix in (("branches", "heads"), ("tags", "tags"))
        }
        self.send_json(200, {**found, "converts": [], "pullRequests": []})

    def create_ref(self, repo: RepoKey, kind: str, arg: str) -> None:
        """``POST .../tag/<revision>`` (the tag in the body) or ``POST .../branch/<name>`` (start in the body)."""
        self.require_write(repo)
        body = self.json_object()
        if kind == "tag":
            name, message = body.get("tag") or "", body.get("message") or ""
            commit_id = self.store.set_ref(repo, "tags", name, arg, message if isinstance(message, str) else "")
        else:
            if body.get("emptyBranch"):
                raise BadRequest("hubkit localhub does not create empty branches; give a starting revision")
            start = body.get("startingPoint")
            name = arg
            commit_id = self.store.set_ref(repo, "branches", name, start if isinstance(start, str) else None)
        prefix = "tags" if kind == "tag" else "heads"
        self.send_json(200, {"name": name, "ref": f"refs/{prefix}/{name}", "targetCommit": commit_id})

    def delete_ref(self, repo: RepoKey, kind: str, name: str) -> None:
        self.require_write(repo)
        self.store.delete_ref(repo, _REF_KINDS[kind], name)
        self.send_json(200, {})

    # ---- reads of a revision

    def tree(self, repo: RepoKey, revision: str, *path: str) -> None:
        commit = self.store.resolve(repo, revision)
        folder = "/".join(path).strip("/")
        folders = folders_of(commit.tree)
        if folder and folder not in folders:
            raise EntryNotFound(f"folder {folder!r} not found at {commit.id}")
        prefix, recursive = f"{folder}/" if folder else "", truthy(self.query, "recursive")

        def wanted(p: str) -> bool:
            return p.startswith(prefix) and (recursive or "/" not in p[len(prefix) :])

        entries = sorted(d for d in folders if wanted(d)) + sorted(p for p in commit.tree if wanted(p))
        expand = truthy(self.query, "expand")
        self.send_json(200, [self._path_json(repo, commit, p, expand) for p in entries])

    def paths_info(self, repo: RepoKey, revision: str) -> None:
        commit = self.store.resolve(repo, revision)
        if "json" in self.headers.get("Content-Type", ""):
            body = self.json_object()
            paths, expand = body.get("paths", []), bool(body.get("expand"))
        else:  # the form body huggingface_hub sends
            form = parse_qs(self.body.read().decode(errors="replace"))
            paths, expand = form.get("paths", []), truthy(form, "expand")
        paths = [paths] if isinstance(paths, str) else paths if isinstance(paths, list) else []
        known = folders_of(commit.tree) | commit.tree.keys()
        found = [p.strip("/") for p in paths if isinstance(p, str) and p.strip("/") in known]
        self.send_json(200, [self._path_json(repo, commit, p, expand) for p in dict.fromkeys(found)])

    def _path_json(self, repo: RepoKey, commit: Commit, path: str, expand: bool) -> dict[str, Any]:
        entry = commit.tree.get(path)
        out = (
            _entry_json(path, entry)
            if entry is not None
            else {"type": "directory", "oid": folder_oid(commit.tree, path), "size": 0, "path": path}
        )
        if expand:
            last = self.store.last_change(repo, commit, path)
            out["lastCommit"] = {"id": last.id, "title": last.title, "date": last.date}
        return out

    def resolve_file(self, repo: RepoKey, revision: str, path: str) -> None:
        self.readable(repo)
        commit = self.store.resolve(repo, revision)
        entry = commit.tree.get(path)
        if entry is None:
            raise Reply(404, f"Entry not found: {path!r} at {commit.id}", "EntryNotFound", {"X-Repo-Commit": commit.id})
        blob = self.store.blob_path(entry)
        if not blob.is_file():
            raise Reply(500, f"the store lost the content of {path!r}; the hub root is damaged")
        rng = parse_range(self.headers.get("Range"), entry.size)
        start, length = rng if rng is not None else (0, entry.size)
        etag, name = f'"{entry.lfs or entry.oid}"', quote(path.rsplit("/", 1)[-1])
        headers = {
            "Content-Type": "application/octet-stream",
            "Content-Length": str(length),
            "Accept-Ranges": "bytes",
            "ETag": etag,
            "X-Repo-Commit": commit.id,
            "Content-Disposition": f"inline; filename*=UTF-8''{name}; filename=\"{name}\"",
        }
        if entry.lfs:
            headers.update({"X-Linked-Etag": etag, "X-Linked-Size": str(entry.size)})
        if rng is not None:
            headers["Content-Range"] = f"bytes {start}-{start + length - 1}/{entry.size}"
        self.send_response(206 if rng is not None else 200)
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command == "GET":
            for chunk in iter_chunks(blob, start, length):
                self.wfile.write(chunk)

    # ---- writes: preupload, LFS, commits

    def lfs_available(self, oid: str) -> bool:
        """Whether the LFS object `oid` is stored and the caller uploaded it or can read a repo holding it."""
        if self.store.lfs_size(oid) is None:
            return False
        repos, users = self.store.lfs_holders(oid)
        return (self.identity is not None and self.identity.user in users) or any(map(self._may_read, repos))

    def _may_read(self, repo: RepoKey) -> bool:
        try:
            self.readable(repo)
            return True
        except LocalHubError:
            return False

    def preupload(self, repo: RepoKey, revision: str) -> None:
        self.require_write(repo)
        files_in = self.json_object().get("files", [])
        self.check_fault("preupload")
        commit = self.store.resolve(repo, revision)
        files = []
        for item in files_in if isinstance(files_in, list) else []:
            path = _text(item, "path") if isinstance(item, dict) else ""
            try:
                sample = base64.b64decode(item.get("sample") or "")
                size = int(item.get("size", 0))
            except (binascii.Error, TypeError, ValueError) as exc:
                raise BadRequest(f"preupload entry for {path!r} has a bad sample or size") from exc
            remote = commit.tree.get(path)
            oid = (remote.lfs or remote.oid) if remote else None
            files.append({"path": path, "uploadMode": upload_mode(path, size, sample), "shouldIgnore": False, "oid": oid})
        self.send_json(200, {"files": files, "commitOid": commit.id})

    def lfs_batch(self, repo: RepoKey) -> None:
        identity = self.require_write(repo)
        body = self.json_object()
        self.check_fault("lfs_batch")
        if body.get("operation") != "upload":
            raise BadRequest("hubkit localhub only serves LFS uploads; download files through /resolve/")
        objects = body.get("objects", [])
        if not isinstance(objects, list) or not all(isinstance(o, dict) for o in objects):
            raise BadRequest("LFS batch 'objects' must be a list of {oid, size}")
        answer = [self._lfs_batch_object(o.get("oid"), o.get("size"), identity.user) for o in objects]
        self.send_json(200, {"transfer": "basic", "objects": answer, "hash_algo": "sha256"}, ctype=_LFS_JSON)

    def _lfs_batch_object(self, oid: Any, size: Any, user: str) -> dict[str, Any]:
        """Upload instructions for one object, or none when the caller can already read its bytes here."""
        limit = self.hub.limits.max_upload
        stored = self.store.lfs_size(oid)
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            error = (422, "size must be a number")
        elif not isinstance(oid, str) or not SHA256_RE.fullmatch(oid):
            error = (422, "oid must be a sha256")
        elif stored == size and self.lfs_available(oid):
            return {"oid": oid, "size": size}
        elif stored is not None and stored != size:
            error = (422, f"size {size} does not match")
        elif size > limit:
            error = (413, f"object of {size} bytes is over this server's limit of {limit}")
        else:
            ticket = self.hub.uploads.issue(oid, size, user)
            upload = {"href": self.own_url(f"_localhub/lfs/{oid}?size={size}&ticket={ticket}"), "header": {}}
            verify = {"href": self.own_url(f"_localhub/lfs/verify?ticket={ticket}")}
            return {"oid": oid, "size": size, "authenticated": True, "actions": {"upload": upload, "verify": verify}}
        return {"oid": str(oid), "size": size, "error": {"code": error[0], "message": error[1]}}

    def lfs_upload(self, oid: str) -> None:
        ticket = (self.query.get("ticket") or [""])[0]
        if not ticket:
            raise Unauthorized("LFS uploads need an upload URL issued by the batch endpoint")
        try:
            size = int(self.query["size"][0])
        except (KeyError, ValueError) as exc:
            raise BadRequest("LFS upload URL lacks its size; ask the batch endpoint for a new one") from exc
        claim = self.hub.uploads.begin(ticket, oid, size)
        ok = False
        try:
            pace = (self.hub.limits.io_timeout, self.hub.limits.min_body_rate)
            self.body = Body(self, size, on_bytes=lambda n: self.hub.stats.add(lfs_bytes_received=n), pace=pace)
            if self.body.length is not None and self.body.length > size:
                raise TooLarge(f"upload announces {self.body.length} bytes; its URL was issued for {size}")
            self._receive_lfs(oid, size)
            self.store.link_lfs(oid, claim.user)
            ok = True
        finally:
            self.hub.uploads.end(claim, ok=ok)
        self.send_json(200, {})

    def _receive_lfs(self, oid: str, size: int) -> None:
        fault = self.hub.faults.take("lfs_upload")
        chunks = self.body.chunks()
        if fault is not None:
            chunks = fail_after(chunks, fault.after_bytes or 0)
        try:
            self.store.put_lfs(oid, size, chunks)
        except Interrupted as exc:
            self.body.drain()
            if fault is not None and fault.drop:
                raise Drop() from exc
            raise Reply(fault.status if fault else 500, str(exc)) from exc
        finally:
            self.hub.stats.add(lfs_uploads=1)

    def lfs_verify(self) -> None:
        body = self.json_object()
        oid, size = body.get("oid"), body.get("size")
        ticket = (self.query.get("ticket") or [""])[0]
        if not ticket or not isinstance(oid, str):
            raise Unauthorized("LFS verify needs the URL issued by the batch endpoint")
        self.hub.uploads.check(ticket, oid)
        if self.store.lfs_size(oid) != size:
            raise Reply(404, f"LFS object {oid} ({size} bytes) is not stored")
        self.send_json(200, {})

    def commit(self, repo: RepoKey, revision: str) -> None:
        identity = self.require_write(repo)
        if truthy(self.query, "create_pr"):
            raise BadRequest("hubkit localhub does not support pull requests (create_pr=True)")
        lines = self.body.read().splitlines()
        self.check_fault("commit")
        header, operations = self._parse_commit(lines)
        description = header.get("description")
        commit = self.store.apply_commit(
            repo,
            revision.removeprefix("refs/heads/"),
            operations,
            title=header["summary"],
            message=description if isinstance(description, str) else "",
            parent=header.get("parentCommit"),
            author=identity.user,
        )
        for op in operations:
            if isinstance(op, AddFile) and op.entry.lfs is not None:
                self.store.link_lfs(op.entry.lfs, repo)
        self.hub.stats.add(commits=1)
        commit_url = f"{self.repo_url(repo)}/commit/{commit.id}"
        self.send_json(
            200,
            {"success": True, "commitOid": commit.id, "commitUrl": commit_url, "commitMessage": commit.title,
             "hookOutput": "", "pullRequestUrl": None},
        )  # fmt: skip

    def _parse_commit(self, lines: list[bytes]) -> tuple[dict[str, Any], list[Operation]]:
        """Header and operations of an NDJSON commit (a header line, then one line per operation).

        LFS pointers are checked before anything is stored; regular contents are stored
        (content-addressed, so harmless) only once every line has parsed.
        """
        items = []
        for raw in lines:
            if raw.strip():
                try:
                    items.append(json.loads(raw))
                except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                    raise BadRequest(f"commit payload line is not JSON: {exc}") from exc
        if not items or not all(isinstance(i, dict) for i in items) or items[0].get("key") != "header":
            raise BadRequest("commit payload must be JSON objects starting with a 'header' line")
        header = items[0].get("value") or {}
        if not isinstance(header, dict) or not isinstance(header.get("summary"), str) or not header["summary"]:
            raise BadRequest("commit message (header.summary) must be a non-empty string")
        pending = [self._parse_operation(item.get("key"), item.get("value") or {}) for item in items[1:]]
        ops = [op if not isinstance(op, tuple) else AddFile(op[0], self.store.put_regular(op[1])) for op in pending]
        return header, ops

    def _parse_operation(self, key: Any, value: Any) -> Operation | tuple[str, bytes]:
        """One commit line; regular content comes back as ``(path, bytes)`` to be stored later."""
        if not isinstance(value, dict):
            raise BadRequest("each commit operation's 'value' must be a JSON object")
        path = _text(value, "path")
        if key == "file":
            content = _text(value, "content")
            if value.get("encoding", "utf-8") != "base64":
                return path, content.encode()
            try:
                return path, base64.b64decode(content, validate=True)
            except binascii.Error as exc:
                raise BadRequest(f"content of {path!r} is not valid base64") from exc
        if key == "lfsFile":
            oid = _text(value, "oid")
            stored = self.store.lfs_size(oid)
            if stored is None or not self.lfs_available(oid):  # one answer for both: existence is not revealed
                raise BadRequest(
                    f"LFS object {oid} for {path!r} was never uploaded: upload it through the LFS batch API "
                    "before committing a pointer to it"
                )
            if value.get("size") is not None and value["size"] != stored:
                raise BadRequest(f"LFS object {oid} for {path!r} has {stored} bytes, not {value['size']}")
            return AddFile(path, lfs_entry(oid, stored))
        if key in ("deletedFile", "deletedFolder"):
            return DeleteFile(path) if key == "deletedFile" else DeleteFolder(path)
        raise BadRequest(f"unsupported commit operation {key!r} (hubkit localhub knows file, lfsFile, deleted*)")


def _text(value: dict[str, Any], key: str) -> str:
    """``value[key]`` when it is a string (absent: empty); BadRequest otherwise."""
    item = value.get(key, "")
    if not isinstance(item, str):
        raise BadRequest(f"field {key!r} must be a string")
    return item


def _entry_json(path: str, entry: Entry) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "file", "oid": entry.oid, "size": entry.size, "path": path}
    if entry.lfs:
        out["lfs"] = {"oid": entry.lfs, "size": entry.size, "pointerSize": len(entry.pointer or b"")}
    return out


def _commit_json(commit: Commit) -> dict[str, Any]:
    authors = [{"user": commit.author, "avatar": None}]
    return {"id": commit.id, "title": commit.title, "message": commit.message, "authors": authors, "date": commit.date}
