"""The Hub API the local Hub serves: which URL reaches which route, and the routes themselves.

A commit can only point at LFS objects the caller uploaded or can read in a repo holding them, so a
sha256 alone never opens someone else's private file.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from functools import partial
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import yaml

from hubkit.localhub.errors import (
    BadRequest,
    Conflict,
    EntryNotFound,
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
    upload_mode,
)
from hubkit.localhub.storage import iter_chunks

_LFS_JSON = "application/vnd.git-lfs+json"
_REF_PREFIX = {"branches": "heads", "tags": "tags"}  # the store's ref kinds, as git names them


# ---------------------------------------------------------------- accounts and repos


def whoami(req: HandlerBase) -> None:
    identity = req.require_identity()
    orgs = [{"type": "org", "name": o, "fullname": o, "roleInOrg": "admin"} for o in identity.orgs]
    role = "write" if identity.write else "read"
    req.send_json(
        200,
        {
            "type": "user", "id": "0" * 24, "name": identity.user, "fullname": identity.user,
            "email": None, "emailVerified": False, "isPro": False, "canPay": False, "orgs": orgs,
            "auth": {"type": "access_token", "accessToken": {"displayName": "hubkit-local", "role": role}},
        },
    )  # fmt: skip


def validate_yaml(req: HandlerBase) -> None:
    content = req.json_object().get("content", "")
    try:
        front_matter(content if isinstance(content, str) else "")
    except yaml.YAMLError as exc:
        message = f"Invalid YAML in README.md metadata: {exc}"
        req.send_json(400, {"error": message, "errors": [{"message": message}], "warnings": []})
        return
    req.send_json(200, {"errors": [], "warnings": []})


def create_repo(req: HandlerBase) -> None:
    identity = req.require_identity()
    body = req.json_object()
    repo = _repo_from_body(body, identity.user)
    req.require_write(repo, exists=False)
    private = body.get("private") is True or body.get("visibility") == "private"
    sdk = body.get("sdk") if isinstance(body.get("sdk"), str) else None
    try:
        req.store.create_repo(repo, private=private, sdk=sdk, author=identity.user)
    except Conflict as exc:
        req.send_json(409, {"error": str(exc), "url": req.repo_url(repo)}, {"X-Error-Message": str(exc)})
        return
    req.send_json(200, {"url": req.repo_url(repo), "name": repo.id, "id": repo.id})


def delete_repo(req: HandlerBase) -> None:
    repo = _repo_from_body(req.json_object(), req.require_identity().user)
    req.require_write(repo)
    req.store.delete_repo(repo)
    req.send_json(200, {})


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


def repo_info(req: HandlerBase, repo: RepoKey, revision: str | None = None) -> None:
    meta = req.readable(repo)
    commit = req.store.resolve(repo, revision)
    siblings = []
    for path, entry in sorted(commit.tree.items()):
        sibling: dict[str, Any] = {"rfilename": path, "size": entry.size, "blobId": entry.oid}
        if entry.lfs:
            sibling["lfs"] = _lfs_json(entry, "sha256")
        siblings.append(sibling)
    card = _card_data(req, commit)
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
    req.send_json(200, info)


def _card_data(req: HandlerBase, commit: Commit) -> dict[str, Any] | None:
    entry = commit.tree.get("README.md")
    if entry is None or entry.lfs:
        return None
    try:
        return front_matter(req.store.blob_path(entry).read_text(errors="replace"))
    except yaml.YAMLError:
        return None


def list_refs(req: HandlerBase, repo: RepoKey) -> None:
    refs = req.store.refs(repo)
    found = {
        kind: [
            _ref_json(kind, n, t if kind == "branches" else t["commit"])
            for n, t in sorted(refs[kind].items())
        ]
        for kind in _REF_PREFIX
    }
    req.send_json(200, {**found, "converts": [], "pullRequests": []})


def create_ref(req: HandlerBase, repo: RepoKey, arg: str, *, kind: str) -> None:
    """``POST .../tag/<revision>`` (the tag in the body) or ``POST .../branch/<name>`` (start in the body)."""
    req.require_write(repo)
    body = req.json_object()
    if kind == "tags":
        name, message = body.get("tag") or "", body.get("message") or ""
        commit_id = req.store.set_ref(repo, kind, name, arg, message if isinstance(message, str) else "")
    else:
        if body.get("emptyBranch"):
            raise BadRequest("hubkit localhub does not create empty branches; give a starting revision")
        name, start = arg, body.get("startingPoint")
        commit_id = req.store.set_ref(repo, kind, name, start if isinstance(start, str) else None)
    req.send_json(200, _ref_json(kind, name, commit_id))


def delete_ref(req: HandlerBase, repo: RepoKey, name: str, *, kind: str) -> None:
    req.require_write(repo)
    req.store.delete_ref(repo, kind, name)
    req.send_json(200, {})


def _ref_json(kind: str, name: str, commit_id: str) -> dict[str, str]:
    return {"name": name, "ref": f"refs/{_REF_PREFIX[kind]}/{name}", "targetCommit": commit_id}


# ---------------------------------------------------------------- reads of a revision


def tree(req: HandlerBase, repo: RepoKey, revision: str, *path: str) -> None:
    commit = req.store.resolve(repo, revision)
    folder = "/".join(path).strip("/")
    folders = folders_of(commit.tree)
    if folder and folder not in folders:
        raise EntryNotFound(f"folder {folder!r} not found at {commit.id}")
    prefix, recursive = f"{folder}/" if folder else "", truthy(req.query, "recursive")

    def wanted(p: str) -> bool:
        return p.startswith(prefix) and (recursive or "/" not in p[len(prefix) :])

    entries = sorted(d for d in folders if wanted(d)) + sorted(p for p in commit.tree if wanted(p))
    expand = truthy(req.query, "expand")
    req.send_json(200, [_path_json(req, repo, commit, p, expand) for p in entries])


def paths_info(req: HandlerBase, repo: RepoKey, revision: str) -> None:
    commit = req.store.resolve(repo, revision)
    if "json" in req.headers.get("Content-Type", ""):
        body = req.json_object()
        paths, expand = body.get("paths", []), bool(body.get("expand"))
    else:  # the form body huggingface_hub sends
        form = parse_qs(req.body.read().decode(errors="replace"))
        paths, expand = form.get("paths", []), truthy(form, "expand")
    paths = [paths] if isinstance(paths, str) else paths if isinstance(paths, list) else []
    known = folders_of(commit.tree) | commit.tree.keys()
    found = [p.strip("/") for p in paths if isinstance(p, str) and p.strip("/") in known]
    req.send_json(200, [_path_json(req, repo, commit, p, expand) for p in dict.fromkeys(found)])


def _path_json(req: HandlerBase, repo: RepoKey, commit: Commit, path: str, expand: bool) -> dict[str, Any]:
    entry = commit.tree.get(path)
    if entry is None:
        out = {"type": "directory", "oid": folder_oid(commit.tree, path), "size": 0, "path": path}
    else:
        out = {"type": "file", "oid": entry.oid, "size": entry.size, "path": path}
        if entry.lfs:
            out["lfs"] = _lfs_json(entry, "oid")
    if expand:
        last = req.store.last_change(repo, commit, path)
        out["lastCommit"] = {"id": last.id, "title": last.title, "date": last.date}
    return out


def resolve_file(req: HandlerBase, repo: RepoKey, revision: str, path: str) -> None:
    req.readable(repo)
    commit = req.store.resolve(repo, revision)
    entry = commit.tree.get(path)
    if entry is None:
        raise Reply(
            404, f"Entry not found: {path!r} at {commit.id}", "EntryNotFound", {"X-Repo-Commit": commit.id}
        )
    blob = req.store.blob_path(entry)
    if not blob.is_file():
        raise Reply(500, f"the store lost the content of {path!r}; the hub root is damaged")
    rng = parse_range(req.headers.get("Range"), entry.size)
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
    req.send_response(206 if rng is not None else 200)
    for key, value in headers.items():
        req.send_header(key, value)
    req.end_headers()
    if req.command == "GET":
        for chunk in iter_chunks(blob, start, length):
            req.wfile.write(chunk)


# ---------------------------------------------------------------- writes: preupload, LFS, commits


def preupload(req: HandlerBase, repo: RepoKey, revision: str) -> None:
    req.require_write(repo)
    files_in = req.json_object().get("files", [])
    req.check_fault("preupload")
    commit = req.store.resolve(repo, revision)
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
        files.append(
            {"path": path, "uploadMode": upload_mode(path, size, sample), "shouldIgnore": False, "oid": oid}
        )
    req.send_json(200, {"files": files, "commitOid": commit.id})


def lfs_batch(req: HandlerBase, repo: RepoKey) -> None:
    identity = req.require_write(repo)
    body = req.json_object()
    req.check_fault("lfs_batch")
    if body.get("operation") != "upload":
        raise BadRequest("hubkit localhub only serves LFS uploads; download files through /resolve/")
    objects = body.get("objects", [])
    if not isinstance(objects, list) or not all(isinstance(o, dict) for o in objects):
        raise BadRequest("LFS batch 'objects' must be a list of {oid, size}")
    answer = [_lfs_batch_object(req, o.get("oid"), o.get("size"), identity.user) for o in objects]
    req.send_json(200, {"transfer": "basic", "objects": answer, "hash_algo": "sha256"}, ctype=_LFS_JSON)


def _lfs_batch_object(req: HandlerBase, oid: Any, size: Any, user: str) -> dict[str, Any]:
    """Upload instructions for one object, or none when the caller can already read its bytes here."""
    limit = req.hub.limits.max_upload
    stored = req.store.lfs_size(oid)
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        error = (422, "size must be a number")
    elif not isinstance(oid, str) or not SHA256_RE.fullmatch(oid):
        error = (422, "oid must be a sha256")
    elif stored == size and req.lfs_available(oid):
        return {"oid": oid, "size": size}
    elif stored is not None and stored != size:
        error = (422, f"size {size} does not match")
    elif size > limit:
        error = (413, f"object of {size} bytes is over this server's limit of {limit}")
    else:
        ticket = req.hub.uploads.issue(oid, size, user)
        upload = {"href": req.own_url(f"_localhub/lfs/{oid}?size={size}&ticket={ticket}"), "header": {}}
        verify = {"href": req.own_url(f"_localhub/lfs/verify?ticket={ticket}")}
        return {
            "oid": oid,
            "size": size,
            "authenticated": True,
            "actions": {"upload": upload, "verify": verify},
        }
    return {"oid": str(oid), "size": size, "error": {"code": error[0], "message": error[1]}}


def lfs_upload(req: HandlerBase, oid: str) -> None:
    ticket = (req.query.get("ticket") or [""])[0]
    if not ticket:
        raise Unauthorized("LFS uploads need an upload URL issued by the batch endpoint")
    try:
        size = int(req.query["size"][0])
    except (KeyError, ValueError) as exc:
        raise BadRequest("LFS upload URL lacks its size; ask the batch endpoint for a new one") from exc
    claim = req.hub.uploads.begin(ticket, oid, size)
    ok = False
    try:
        req.body = Body(req, size, on_bytes=lambda n: req.hub.stats.add(lfs_bytes_received=n))
        if req.body.length is not None and req.body.length > size:
            raise TooLarge(f"upload announces {req.body.length} bytes; its URL was issued for {size}")
        _receive_lfs(req, oid, size)
        req.store.link_lfs(oid, claim.user)
        ok = True
    finally:
        req.hub.uploads.end(claim, ok=ok)
    req.send_json(200, {})


def _receive_lfs(req: HandlerBase, oid: str, size: int) -> None:
    fault = req.hub.faults.take("lfs_upload")
    chunks = req.body.chunks()
    if fault is not None:
        chunks = fail_after(chunks, fault.after_bytes or 0)
    try:
        req.store.put_lfs(oid, size, chunks)
    except Interrupted as exc:
        req.body.drain()
        if fault is not None and fault.drop:
            raise Drop() from exc
        raise Reply(fault.status if fault else 500, str(exc)) from exc
    finally:
        req.hub.stats.add(lfs_uploads=1)


def lfs_verify(req: HandlerBase) -> None:
    body = req.json_object()
    oid, size = body.get("oid"), body.get("size")
    ticket = (req.query.get("ticket") or [""])[0]
    if not ticket or not isinstance(oid, str):
        raise Unauthorized("LFS verify needs the URL issued by the batch endpoint")
    req.hub.uploads.check(ticket, oid)
    if req.store.lfs_size(oid) != size:
        raise Reply(404, f"LFS object {oid} ({size} bytes) is not stored")
    req.send_json(200, {})


def commit(req: HandlerBase, repo: RepoKey, revision: str) -> None:
    identity = req.require_write(repo)
    if truthy(req.query, "create_pr"):
        raise BadRequest("hubkit localhub does not support pull requests (create_pr=True)")
    lines = req.body.read().splitlines()
    req.check_fault("commit")
    header, operations = _parse_commit(req, lines)
    description = header.get("description")
    commit = req.store.apply_commit(
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
            req.store.link_lfs(op.entry.lfs, repo)
    req.hub.stats.add(commits=1)
    commit_url = f"{req.repo_url(repo)}/commit/{commit.id}"
    req.send_json(
        200,
        {"success": True, "commitOid": commit.id, "commitUrl": commit_url, "commitMessage": commit.title,
         "hookOutput": "", "pullRequestUrl": None},
    )  # fmt: skip


def _parse_commit(req: HandlerBase, lines: list[bytes]) -> tuple[dict[str, Any], list[Operation]]:
    """Header and operations of an NDJSON commit; regular contents are stored only once every line parsed."""
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
    pending = [_parse_operation(req, item.get("key"), item.get("value") or {}) for item in items[1:]]
    ops = [
        op if not isinstance(op, tuple) else AddFile(op[0], req.store.put_regular(op[1])) for op in pending
    ]
    return header, ops


def _parse_operation(req: HandlerBase, key: Any, value: Any) -> Operation | tuple[str, bytes]:
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
        return AddFile(path, req.store.committed_lfs(oid, path, value.get("size"), req.lfs_available(oid)))
    if key in ("deletedFile", "deletedFolder"):
        return DeleteFile(path) if key == "deletedFile" else DeleteFolder(path)
    raise BadRequest(f"unsupported commit operation {key!r} (hubkit localhub knows file, lfsFile, deleted*)")


def _text(value: dict[str, Any], key: str) -> str:
    """``value[key]`` when it is a string (absent: empty); BadRequest otherwise."""
    item = value.get(key, "")
    if not isinstance(item, str):
        raise BadRequest(f"field {key!r} must be a string")
    return item


def _lfs_json(entry: Entry, key: str) -> dict[str, Any]:
    """An LFS file's sha256 (under `key`: the repo info says ``sha256``, the tree ``oid``), size and pointer size."""
    return {key: entry.lfs, "size": entry.size, "pointerSize": len(entry.pointer or b"")}


def list_commits(req: HandlerBase, repo: RepoKey, revision: str) -> None:
    commits = [
        {"id": c.id, "title": c.title, "message": c.message, "date": c.date,
         "authors": [{"user": c.author, "avatar": None}]}
        for c in req.store.history(repo, revision)
    ]  # fmt: skip
    req.send_json(200, commits)


# ---------------------------------------------------------------- routing

#: ``/api/<path>`` routes that name no repo.
API: dict[tuple[str, str], Callable[[HandlerBase], None]] = {
    ("GET", "whoami-v2"): whoami,
    ("POST", "validate-yaml"): validate_yaml,
    ("POST", "repos/create"): create_repo,
    ("DELETE", "repos/delete"): delete_repo,
}
#: ``/api/<type>s/<ns>/<name>/<action>/<args...>`` routes, called with the repo and the args.
REPO_API: dict[tuple[str, str], Callable[..., None]] = {
    ("GET", ""): repo_info,
    ("GET", "revision"): repo_info,
    ("POST", "preupload"): preupload,
    ("POST", "commit"): commit,
    ("GET", "commits"): list_commits,
    ("GET", "refs"): list_refs,
    ("POST", "tag"): partial(create_ref, kind="tags"),
    ("DELETE", "tag"): partial(delete_ref, kind="tags"),
    ("POST", "branch"): partial(create_ref, kind="branches"),
    ("DELETE", "branch"): partial(delete_ref, kind="branches"),
    ("GET", "tree"): tree,
    ("POST", "paths-info"): paths_info,
}
_API_TYPES = {f"{t}s": t for t in REPO_TYPES}  # "models" -> "model"
_REPO_ACTIONS = {action for _, action in REPO_API if action}


class Handler(HandlerBase):
    """The local Hub's request handler: the URL picks one of the routes above."""

    def _route(self, segs: list[str]) -> Callable[[], None]:
        method = self.command
        if segs[:1] == ["api"]:
            return self._route_api(method, segs[1:])
        if segs[:2] == ["_localhub", "lfs"]:
            if method == "POST" and segs[2:] == ["verify"]:
                return lambda: lfs_verify(self)
            if method == "PUT" and len(segs) == 3:
                return lambda: lfs_upload(self, segs[2])
            raise Reply(404, "unknown LFS transfer URL")
        return self._route_repo_url(method, segs)

    def _route_api(self, method: str, segs: list[str]) -> Callable[[], None]:
        if (method, "/".join(segs)) in API:
            return partial(API[(method, "/".join(segs))], self)
        if segs[:1] == ["telemetry"]:
            return lambda: self.send_json(200, {})
        if len(segs) > 1 and segs[0] in _API_TYPES:
            # ns/name/action/...; a lone `name` (a canonical id) is never found
            n = 2 if len(segs) >= 3 and segs[2] not in _REPO_ACTIONS else 1
            repo, tail = RepoKey(_API_TYPES[segs[0]], "/".join(segs[1 : 1 + n])), segs[1 + n :]
            self.readable(repo)  # RepoNotFound before anything else, as on the Hub (private repos included)
            route = REPO_API.get((method, tail[0] if tail else ""))
            if route is None:
                raise Reply(404, f"hubkit localhub does not serve {method} .../{repo.id}/{'/'.join(tail)}")
            return partial(route, self, repo, *tail[1:])
        raise Reply(404, f"hubkit localhub does not serve {method} /api/{'/'.join(segs)}")

    def _route_repo_url(self, method: str, segs: list[str]) -> Callable[[], None]:
        """``/[datasets/|spaces/]ns/name.git/info/lfs/objects/batch`` and ``.../resolve/rev/path``."""
        repo_type = "model"
        if segs[:1] in (["datasets"], ["spaces"]):
            repo_type, segs = segs[0][:-1], segs[1:]
        git = next((i for i, s in enumerate(segs[:2]) if s.endswith(".git")), None)
        if git is not None and segs[git + 1 :] == ["info", "lfs", "objects", "batch"] and method == "POST":
            return partial(lfs_batch, self, RepoKey(repo_type, "/".join(segs[: git + 1])[: -len(".git")]))
        resolve = next((i for i, s in enumerate(segs[:3]) if s == "resolve" and i > 0), None)
        if resolve is not None and len(segs) > resolve + 2 and method in ("GET", "HEAD"):
            repo = RepoKey(repo_type, "/".join(segs[:resolve]))
            return partial(resolve_file, self, repo, segs[resolve + 1], "/".join(segs[resolve + 2 :]))
        raise Reply(404, f"hubkit localhub does not serve {method} {urlsplit(self.path).path}")
