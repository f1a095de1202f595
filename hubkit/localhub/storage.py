"""On-disk store behind the local Hub: repos, refs and commits over a :class:`BlobStore`.

Layout under ``root`` (besides the blobs)::

    repos/<type>s/<ns>/<name>/ repo.json, refs.json, commits/<sha1>.json

Every file is written to ``tmp/`` and moved into place with ``os.replace``. A commit is visible
only once ``refs.json`` is replaced, after its commit object is on disk, so a crash or an error at
any point leaves the repo exactly as it was. Every read-modify-write of refs happens under a
:class:`~hubkit.localhub.locks.WriteLock` (threads and processes), and a commit that names its
``parentCommit`` is applied only if the branch head is still that commit (compare-and-swap).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
from pathlib import Path
from typing import Any

from hubkit.localhub.access import LOCAL_ORGS, LOCAL_USER
from hubkit.localhub.blobs import BlobStore, iter_chunks
from hubkit.localhub.errors import (
    BadRequest,
    Conflict,
    EntryNotFound,
    Forbidden,
    LocalHubError,
    PreconditionFailed,
    RepoNotFound,
    RevisionNotFound,
)
from hubkit.localhub.locks import WriteLock
from hubkit.localhub.objects import (
    DEFAULT_BRANCH,
    GITATTRIBUTES,
    REPO_TYPES,
    SHA1_RE,
    AddFile,
    Commit,
    DeleteFile,
    DeleteFolder,
    Entry,
    Operation,
    Refs,
    RepoKey,
    check_no_file_folder_clash,
    folder_oid,
    folders_of,
    git_blob_sha1,
    lfs_entry,
    now_iso,
    subtree,
    upload_mode,
    validate_path,
    validate_ref_name,
)

__all__ = [  # names other modules and tests import from here
    "LOCAL_ORGS", "LOCAL_USER", "REPO_TYPES", "AddFile", "Commit", "DeleteFile", "DeleteFolder", "Entry",
    "HubStore", "LocalHubError", "Operation", "RepoKey", "folder_oid", "folders_of", "git_blob_sha1",
    "iter_chunks", "lfs_entry", "upload_mode",
]  # fmt: skip


class HubStore(BlobStore):
    """Repos, refs, commits and blobs under one directory; safe to share between threads and processes."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        super().__init__(Path(root))
        (self.root / "repos").mkdir(parents=True, exist_ok=True)
        self.lock = WriteLock(self.root)

    def _repo_dir(self, repo: RepoKey) -> Path:
        return self.root / "repos" / f"{repo.type}s" / repo.id

    # ---- repos

    def create_repo(
        self, repo: RepoKey, *, private: bool = False, sdk: str | None = None, author: str = "system"
    ) -> dict[str, Any]:
        """Create a repo with the Hub's initial commit (a ``.gitattributes`` with the LFS patterns)."""
        repo.validate_name()
        with self.lock.held():
            folder = self._repo_dir(repo)
            if (folder / "repo.json").exists():
                raise Conflict(f"You already created this {repo.type} repo: {repo.id}")
            meta = {"type": repo.type, "id": repo.id, "private": bool(private), "sdk": sdk}
            meta.update(createdAt=now_iso(), _id=secrets.token_hex(12), createdBy=author)
            entry = self.put_regular(GITATTRIBUTES.encode())
            first = self._new_commit(None, {".gitattributes": entry}, "initial commit", "", author="system")
            self._write_commit(repo, first)
            self._write_refs(repo, Refs(branches={DEFAULT_BRANCH: first.id}))
            self.write_json(folder / "repo.json", meta)  # written last: the repo exists from here on
            return meta

    def delete_repo(self, repo: RepoKey) -> None:
        """Remove a repo's refs and history (its blobs stay in the shared object store)."""
        with self.lock.held():
            folder = self._repo_dir(repo)
            self.repo_meta(repo)
            trash = self.tmp / f"deleted-{secrets.token_hex(8)}"
            os.replace(folder, trash)  # atomic: the repo disappears at once
            shutil.rmtree(trash, ignore_errors=True)

    def repo_meta(self, repo: RepoKey) -> dict[str, Any]:
        """The repo's creation record; raises RepoNotFound."""
        path = self._repo_dir(repo) / "repo.json" if repo.is_valid else None
        if path is None or not path.is_file():
            raise RepoNotFound(f"{repo.type} repo {repo.id!r} not found")
        return self.read_json(path)

    # ---- refs and revisions

    def refs(self, repo: RepoKey) -> Refs:
        self.repo_meta(repo)
        data = self.read_json(self._repo_dir(repo) / "refs.json")
        return Refs(branches=data["branches"], tags=data["tags"])

    def _write_refs(self, repo: RepoKey, refs: Refs) -> None:
        self.write_json(self._repo_dir(repo) / "refs.json", {"branches": refs.branches, "tags": refs.tags})

    def resolve(self, repo: RepoKey, revision: str | None) -> Commit:
        """The commit a branch, tag or full commit id names; raises RepoNotFound/RevisionNotFound."""
        refs = self.refs(repo)
        rev = revision or DEFAULT_BRANCH
        for prefix, names in (("refs/heads/", refs.branches), ("refs/tags/", refs.tags)):
            if rev.startswith(prefix) and rev[len(prefix) :] in names:
                rev = rev[len(prefix) :]
        if rev in refs.branches:
            return self.commit(repo, refs.branches[rev])
        if rev in refs.tags:
            return self.commit(repo, refs.tags[rev]["commit"])
        if SHA1_RE.fullmatch(rev) and (self._repo_dir(repo) / "commits" / f"{rev}.json").is_file():
            return self.commit(repo, rev)
        raise RevisionNotFound(f"revision {rev!r} not found in {repo.type} repo {repo.id!r}")

    def create_branch(self, repo: RepoKey, name: str, start: str | None = None) -> str:
        """Create branch ``name`` at ``start`` (default: head of main); returns its commit id."""
        validate_ref_name(name)
        with self.lock.held():
            refs = self.refs(repo)
            if name in refs.branches:
                raise Conflict(f"branch {name!r} already exists in {repo.id!r}")
            refs.branches[name] = self.resolve(repo, start).id
            self._write_refs(repo, refs)
            return refs.branches[name]

    def delete_branch(self, repo: RepoKey, name: str) -> None:
        with self.lock.held():
            refs = self.refs(repo)
            if name == DEFAULT_BRANCH:
                raise Forbidden(f"cannot delete the default branch {DEFAULT_BRANCH!r}")
            if refs.branches.pop(name, None) is None:
                raise RevisionNotFound(f"branch {name!r} not found in {repo.id!r}")
            self._write_refs(repo, refs)

    def create_tag(self, repo: RepoKey, name: str, revision: str | None, message: str = "") -> str:
        """Tag the commit ``revision`` names; returns its id."""
        validate_ref_name(name)
        with self.lock.held():
            refs = self.refs(repo)
            if name in refs.tags:
                raise Conflict(f"tag {name!r} already exists in {repo.id!r}")
            commit_id = self.resolve(repo, revision).id
            refs.tags[name] = {"commit": commit_id, "message": message}
            self._write_refs(repo, refs)
            return commit_id

    def delete_tag(self, repo: RepoKey, name: str) -> None:
        with self.lock.held():
            refs = self.refs(repo)
            if refs.tags.pop(name, None) is None:
                raise RevisionNotFound(f"tag {name!r} not found in {repo.id!r}")
            self._write_refs(repo, refs)

    # ---- commits

    def commit(self, repo: RepoKey, commit_id: str) -> Commit:
        return Commit.from_json(self.read_json(self._repo_dir(repo) / "commits" / f"{commit_id}.json"))

    def history(self, repo: RepoKey, revision: str | None) -> list[Commit]:
        """Commits reachable from ``revision`` through first parents, newest first."""
        commits = [self.resolve(repo, revision)]
        while commits[-1].parent is not None:
            commits.append(self.commit(repo, commits[-1].parent))
        return commits

    def last_change(self, repo: RepoKey, head: Commit, path: str) -> Commit:
        """The newest commit, up to ``head``, that changed the file or folder at ``path``."""
        current, state = head, subtree(head.tree, path)
        while current.parent is not None:
            parent = self.commit(repo, current.parent)
            if subtree(parent.tree, path) != state:
                return current
            current = parent
        return current

    def apply_commit(
        self,
        repo: RepoKey,
        branch: str,
        operations: list[Operation],
        *,
        title: str,
        message: str = "",
        parent: str | None = None,
        author: str = LOCAL_USER,
    ) -> Commit:
        """Apply ``operations`` to the head of ``branch`` as one commit, or change nothing.

        ``parent`` (the client's ``parentCommit``) must be the full id of the branch head when
        given, so that a commit prepared against an older state cannot silently overwrite newer
        work. The head is read and the branch moved under the store's write lock.
        """
        if parent is not None and not (isinstance(parent, str) and SHA1_RE.fullmatch(parent)):
            raise BadRequest(f"parentCommit {parent!r} is not a full 40-character commit id")
        with self.lock.held():
            refs = self.refs(repo)
            if branch not in refs.branches:
                raise RevisionNotFound(f"branch {branch!r} not found in {repo.id!r}; commits go to a branch")
            head = self.commit(repo, refs.branches[branch])
            if parent is not None and head.id != parent:
                raise PreconditionFailed(
                    f"A commit has happened since {parent}: {branch!r} is now at {head.id}. Refresh and retry."
                )
            tree = apply_operations(self, dict(head.tree), operations)
            new = self._new_commit(head.id, tree, title, message, author=author)
            self._write_commit(repo, new)
            refs.branches[branch] = new.id
            self._write_refs(repo, refs)  # the commit becomes visible here, atomically
            return new

    def _new_commit(
        self, parent: str | None, tree: dict[str, Entry], title: str, message: str, *, author: str
    ) -> Commit:
        """A commit whose id is the sha1 of its content, like a git commit id."""
        fields = {"parent": parent, "title": title, "message": message, "author": author, "date": now_iso()}
        content = {**fields, "tree": {p: e.to_json() for p, e in sorted(tree.items())}}
        commit_id = hashlib.sha1(json.dumps(content, sort_keys=True).encode()).hexdigest()
        return Commit(id=commit_id, tree=tree, **fields)

    def _write_commit(self, repo: RepoKey, commit: Commit) -> None:
        self.write_json(self._repo_dir(repo) / "commits" / f"{commit.id}.json", commit.to_json())


def apply_operations(
    blobs: BlobStore, tree: dict[str, Entry], operations: list[Operation]
) -> dict[str, Entry]:
    """``tree`` changed by ``operations``; raises (changing nothing on disk) when one cannot apply."""
    for op in operations:
        validate_path(op.path.rstrip("/") if isinstance(op, DeleteFolder) else op.path)
        if isinstance(op, AddFile):
            _check_content(blobs, op)
            tree[op.path] = op.entry
        elif isinstance(op, DeleteFile):
            if tree.pop(op.path, None) is None:
                raise EntryNotFound(f"A file with this name doesn't exist: {op.path!r}")
        else:
            prefix = op.path.rstrip("/") + "/"
            doomed = [p for p in tree if p.startswith(prefix)]
            if not doomed:
                raise EntryNotFound(f"A folder with this name doesn't exist: {op.path!r}")
            for p in doomed:
                del tree[p]
    check_no_file_folder_clash(tree)
    return tree


def _check_content(blobs: BlobStore, op: AddFile) -> None:
    """Every added file's bytes must already be in the store (LFS ones: uploaded beforehand)."""
    entry = op.entry
    if entry.lfs is not None:
        size = blobs.lfs_size(entry.lfs)
        if size is None:
            raise BadRequest(
                f"LFS object {entry.lfs} for {op.path!r} was never uploaded: upload it through "
                "the LFS batch API before committing a pointer to it"
            )
        if size != entry.size:
            raise BadRequest(f"LFS object {entry.lfs} for {op.path!r} has {size} bytes, not {entry.size}")
    elif not blobs.blob_path(entry).is_file():
        raise BadRequest(f"content {entry.oid} for {op.path!r} is not in the store")
