"""Routes that write content: preupload, the LFS batch/upload/verify protocol, and commits.

LFS bytes enter only through a URL the batch endpoint issued to a caller allowed to write to the
repo (:mod:`~hubkit.localhub.uploads`); a commit can only point at LFS objects already stored.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from hubkit.localhub.commit_payload import parse_commit, text_field
from hubkit.localhub.errors import BadRequest, LocalHubError, TooLarge, Unauthorized
from hubkit.localhub.handler import HandlerBase
from hubkit.localhub.http import Body, Drop, Interrupted, Reply, fail_after, truthy
from hubkit.localhub.objects import SHA256_RE, AddFile, RepoKey, upload_mode

_LFS_JSON = "application/vnd.git-lfs+json"


class UploadRoutes(HandlerBase):
    """Endpoints that bring bytes in and move branches."""

    def lfs_available(self, oid: str) -> bool:
        """Whether the LFS object `oid` is stored and the caller uploaded it or can read a repo holding it.

        Otherwise the caller must upload the bytes (proving it has them) before committing a
        pointer: a sha256 alone never opens someone else's private file.
        """
        if self.store.lfs_size(oid) is None:
            return False
        repos, users = self.store.lfs_holders(oid)
        if self.identity is not None and self.identity.user in users:
            return True
        for holder in repos:
            try:
                self.readable(holder)
                return True
            except LocalHubError:
                continue
        return False

    def preupload(self, repo: RepoKey, revision: str) -> None:
        self.require_write(repo)
        files_in = self.json_object().get("files", [])
        self.check_fault("preupload")
        commit = self.store.resolve(repo, revision)
        files = []
        for item in files_in if isinstance(files_in, list) else []:
            path = text_field(item, "path") if isinstance(item, dict) else ""
            try:
                sample = base64.b64decode(item.get("sample") or "")
                size = int(item.get("size", 0))
            except (binascii.Error, TypeError, ValueError) as exc:
                raise BadRequest(f"preupload entry for {path!r} has a bad sample or size") from exc
            remote = commit.tree.get(path)
            files.append(
                {
                    "path": path,
                    "uploadMode": upload_mode(path, size, sample),
                    "shouldIgnore": False,
                    "oid": (remote.lfs or remote.oid) if remote else None,
                }
            )
        self.send_json(200, {"files": files, "commitOid": commit.id})

    # ---- LFS

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
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            return {"oid": str(oid), "size": size, "error": {"code": 422, "message": "size must be a number"}}
        if not isinstance(oid, str) or not SHA256_RE.fullmatch(oid):
            return {"oid": str(oid), "size": size, "error": {"code": 422, "message": "oid must be a sha256"}}
        stored = self.store.lfs_size(oid)
        if stored == size and self.lfs_available(oid):
            return {"oid": oid, "size": size}
        if stored is not None and stored != size:
            return {
                "oid": oid,
                "size": size,
                "error": {"code": 422, "message": f"size {size} does not match"},
            }
        if size > self.hub.limits.max_upload:
            message = f"object of {size} bytes is over this server's limit of {self.hub.limits.max_upload}"
            return {"oid": oid, "size": size, "error": {"code": 413, "message": message}}
        ticket = self.hub.uploads.issue(oid, size, user)
        upload = {"href": self.own_url(f"_localhub/lfs/{oid}?size={size}&ticket={ticket}"), "header": {}}
        verify = {"href": self.own_url(f"_localhub/lfs/verify?ticket={ticket}")}
        return {
            "oid": oid,
            "size": size,
            "authenticated": True,
            "actions": {"upload": upload, "verify": verify},
        }

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
            self.body = Body(
                self, size, on_bytes=lambda n: self.hub.stats.add(lfs_bytes_received=n), pace=pace
            )
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

    # ---- commits

    def commit(self, repo: RepoKey, revision: str) -> None:
        identity = self.require_write(repo)
        if truthy(self.query, "create_pr"):
            raise BadRequest("hubkit localhub does not support pull requests (create_pr=True)")
        lines = self.body.read().splitlines()
        self.check_fault("commit")
        header, operations = parse_commit(self.store, lines, self.lfs_available)
        commit = self.store.apply_commit(
            repo,
            revision.removeprefix("refs/heads/"),
            operations,
            title=header["summary"],
            message=header.get("description") if isinstance(header.get("description"), str) else "",
            parent=header.get("parentCommit"),
            author=identity.user,
        )
        for op in operations:
            if isinstance(op, AddFile) and op.entry.lfs is not None:
                self.store.link_lfs(op.entry.lfs, repo)
        self.hub.stats.add(commits=1)
        self.send_json(
            200,
            {
                "success": True,
                "commitOid": commit.id,
                "commitUrl": f"{self.repo_url(repo)}/commit/{commit.id}",
                "commitMessage": commit.title,
                "hookOutput": "",
                "pullRequestUrl": None,
            },
        )
