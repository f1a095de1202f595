"""On-disk store behind the local Hub: content-addressed blobs, repos, refs and commits.

Layout under ``root``::

    objects/git/ab/cdef...          regular files by git blob sha1
    objects/lfs/ab/cdef...          LFS files by sha256
    objects/lfs-links/ab/<sha256>/  the repos that committed an LFS object and the users who uploaded it
    repos/<type>s/<ns>/<name>/      repo.json, refs.json, commits/<sha1>.json
    tmp/                            partial writes, on the same filesystem so that os.replace is atomic

A commit is visible only once ``refs.json`` is replaced, after its commit object is on disk, so a
crash leaves the repo as it was. Blobs are never deleted; the links let the server hand an object
only to callers who can read a repo holding it.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

from filelock import FileLock
from huggingface_hub.utils.sha import git_hash

from hubkit.localhub.access import LOCAL_USER
from hubkit.localhub.errors import (
    BadRequest,
    Conflict,
    EntryNotFound,
    Forbidden,
    PreconditionFailed,
    RepoNotFound,
    RevisionNotFound,
    TooLarge,
)
from hubkit.localhub.objects import (
    DEFAULT_BRANCH,
    GITATTRIBUTES,
    REPO_TYPES,
    SHA1_RE,
    SHA256_RE,
    AddFile,
    Commit,
    DeleteFile,
    Entry,
    Operation,
    RepoKey,
    folders_of,
    json_bytes,
    lfs_entry,
    now_iso,
    subtree,
    validate_path,
    validate_ref_name,
)

CHUNK = 1024 * 1024
Refs = dict[str, dict[str, Any]]  # {"branches": {name: commit}, "tags": {name: {"commit", "message"}}}
_NOUN = {"branches": "branch", "tags": "tag"}


class BlobStore:
    """Content-addressed blobs, and the atomic writes everything else uses, under one root."""

    def __init__(self, root: Path) -> None:
        self.root, self.tmp = root, root / "tmp"
        for sub in ("objects/git", "objects/lfs", "tmp"):
            (root / sub).mkdir(parents=True, exist_ok=True)

    def clean_tmp(self) -> int:
        """Remove what killed writers left in ``tmp/``; call only while holding the root's server lock."""
        leftovers = len(list(self.tmp.iterdir()))
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp.mkdir(exist_ok=True)
        return leftovers

    def atomic_write(
        self, path: Path, data: bytes | Iterable[bytes], check: Callable[[str], None] | None = None
    ) -> None:
        """Write ``data`` to ``path`` through a synced temp file; ``check(temp file)`` may refuse it first."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.tmp)
        try:
            with os.fdopen(fd, "wb") as f:
                for chunk in [data] if isinstance(data, bytes) else data:
                    f.write(chunk)
                f.flush()
                os.fsync(f.fileno())
            if check is not None:
                check(tmp)
            os.replace(tmp, path)
        finally:
            Path(tmp).unlink(missing_ok=True)

    def _object_path(self, kind: str, digest: str) -> Path:
        return self.root / "objects" / kind / digest[:2] / digest[2:]

    def blob_path(self, entry: Entry) -> Path:
        return self._object_path("lfs", entry.lfs) if entry.lfs else self._object_path("git", entry.oid)

    def put_regular(self, data: bytes) -> Entry:
        """Store a regular (non-LFS) file's bytes under their git blob id."""
        entry = Entry(oid=git_hash(data), size=len(data))
        if not self.blob_path(entry).exists():
            self.atomic_write(self.blob_path(entry), data)
        return entry

    def lfs_size(self, sha256: str) -> int | None:
        """Size of a stored LFS object, or None when it was never uploaded."""
        if not isinstance(sha256, str) or not SHA256_RE.fullmatch(sha256):
            return None
        path = self._object_path("lfs", sha256)
        return path.stat().st_size if path.exists() else None

    def put_lfs(self, sha256: str, size: int, chunks: Iterable[bytes]) -> None:
        """Store an LFS object streamed as ``chunks``; size and sha256 are verified before it is visible."""
        if not SHA256_RE.fullmatch(sha256):
            raise BadRequest(f"invalid LFS oid {sha256!r}: expected 64 lowercase hex characters")
        digest, received = hashlib.sha256(), 0

        def counted() -> Iterator[bytes]:
            nonlocal received
            for chunk in chunks:
                received += len(chunk)
                if received > size:
                    raise TooLarge(f"LFS upload cut off: more than the {size} bytes its URL was issued for")
                digest.update(chunk)
                yield chunk

        def verify(_: str) -> None:
            if received != size or digest.hexdigest() != sha256:
                raise BadRequest(
                    f"LFS upload rejected: received {received} bytes with sha256 {digest.hexdigest()}, "
                    f"expected {size} bytes with sha256 {sha256}"
                )

        self.atomic_write(self._object_path("lfs", sha256), counted(), check=verify)

    def _links(self, sha256: str) -> Path:
        return self.root / "objects" / "lfs-links" / sha256[:2] / sha256

    def link_lfs(self, sha256: str, holder: RepoKey | str) -> None:
        """Record who holds the LFS object `sha256`: a repo that committed it, or a user who uploaded it."""
        name = f"user~{holder}" if isinstance(holder, str) else f"{holder.type}~{holder.id.replace('/', '~')}"
        self._links(sha256).mkdir(parents=True, exist_ok=True)
        (self._links(sha256) / name).touch()

    def lfs_holders(self, sha256: str) -> tuple[list[RepoKey], set[str]]:
        """The repos (some may be deleted since) and the users recorded as holding the LFS object."""
        folder = self._links(sha256) if isinstance(sha256, str) and SHA256_RE.fullmatch(sha256) else None
        repos: list[RepoKey] = []
        users: set[str] = set()
        for marker in sorted(folder.iterdir()) if folder is not None and folder.is_dir() else []:
            kind, _, rest = marker.name.partition("~")
            ns, _, name = rest.partition("~")
            if kind == "user":
                users.add(rest)
            elif kind in REPO_TYPES and ns and name:
                repos.append(RepoKey(kind, f"{ns}/{name}"))
        return repos, users

    def committed_lfs(self, sha256: str, path: str, size: object = None, visible: bool = True) -> Entry:
        """The stored LFS object's entry at `path` if it has `size` bytes (None: any); not `visible`: as absent."""
        stored = self.lfs_size(sha256)
        if stored is None or not visible:
            raise BadRequest(
                f"LFS object {sha256} for {path!r} was never uploaded: upload it through "
                "the LFS batch API before committing a pointer to it"
            )
        if size is not None and size != stored:
            raise BadRequest(f"LFS object {sha256} for {path!r} has {stored} bytes, not {size}")
        return lfs_entry(sha256, stored)


class HubStore(BlobStore):
    """Repos, refs, commits and blobs under one directory; safe to share between threads and processes."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        super().__init__(Path(root))
        (self.root / "repos").mkdir(exist_ok=True)
        self._threads = threading.RLock()
        self._file_lock = FileLock(self.root / ".write.lock")  # re-entrant within a thread

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the store's write lock (re-entrant), against other threads and other processes."""
        with self._threads, self._file_lock:
            yield

    # ---- repos

    def _repo_dir(self, repo: RepoKey) -> Path:
        return self.root / "repos" / f"{repo.type}s" / repo.id

    def create_repo(
        self, repo: RepoKey, *, private: bool = False, sdk: str | None = None, author: str = "system"
    ) -> dict[str, Any]:
        """Create a repo with the Hub's initial commit (a ``.gitattributes`` with the LFS patterns)."""
        repo.validate_name()
        with self.locked():
            folder = self._repo_dir(repo)
            if (folder / "repo.json").exists():
                raise Conflict(f"You already created this {repo.type} repo: {repo.id}")
            meta = {"type": repo.type, "id": repo.id, "private": bool(private), "sdk": sdk}
            meta.update(createdAt=now_iso(), _id=secrets.token_hex(12), createdBy=author)
            attributes = {".gitattributes": self.put_regular(GITATTRIBUTES.encode())}
            first = Commit.new(None, attributes, "initial commit", "", "system")
            self._write_commit(repo, first)
            self._write_refs(repo, {"branches": {DEFAULT_BRANCH: first.id}, "tags": {}})
            # written last: the repo exists from here on
            self.atomic_write(folder / "repo.json", json_bytes(meta))
            return meta

    def delete_repo(self, repo: RepoKey) -> None:
        """Remove a repo's refs and history (its blobs stay in the shared object store)."""
        with self.locked():
            self.repo_meta(repo)
            trash = self.tmp / f"deleted-{secrets.token_hex(8)}"
            os.replace(self._repo_dir(repo), trash)  # atomic: the repo disappears at once
            shutil.rmtree(trash, ignore_errors=True)

    def repo_meta(self, repo: RepoKey) -> dict[str, Any]:
        """The repo's creation record; raises RepoNotFound."""
        path = self._repo_dir(repo) / "repo.json" if repo.is_valid else None
        if path is None or not path.is_file():
            raise RepoNotFound(f"{repo.type} repo {repo.id!r} not found")
        return json.loads(path.read_text())

    # ---- refs and revisions

    def refs(self, repo: RepoKey) -> Refs:
        self.repo_meta(repo)
        return json.loads((self._repo_dir(repo) / "refs.json").read_text())

    def _write_refs(self, repo: RepoKey, refs: Refs) -> None:
        self.atomic_write(self._repo_dir(repo) / "refs.json", json_bytes(refs))

    def resolve(self, repo: RepoKey, revision: str | None) -> Commit:
        """The commit a branch, tag or full commit id names; raises RepoNotFound/RevisionNotFound."""
        refs = self.refs(repo)
        branches, tags = refs["branches"], refs["tags"]
        rev = revision or DEFAULT_BRANCH
        for prefix, names in (("refs/heads/", branches), ("refs/tags/", tags)):
            if rev.startswith(prefix) and rev[len(prefix) :] in names:
                rev = rev[len(prefix) :]
        if rev in branches:
            return self.commit(repo, branches[rev])
        if rev in tags:
            return self.commit(repo, tags[rev]["commit"])
        if SHA1_RE.fullmatch(rev) and (self._repo_dir(repo) / "commits" / f"{rev}.json").is_file():
            return self.commit(repo, rev)
        raise RevisionNotFound(f"revision {rev!r} not found in {repo.type} repo {repo.id!r}")

    def set_ref(
        self, repo: RepoKey, kind: str, name: str, revision: str | None = None, message: str = ""
    ) -> str:
        """Create branch or tag (`kind`) ``name`` at ``revision`` (default: head of main); returns its commit id."""
        validate_ref_name(name)
        with self.locked():
            refs = self.refs(repo)
            if name in refs[kind]:
                raise Conflict(f"{_NOUN[kind]} {name!r} already exists in {repo.id!r}")
            commit_id = self.resolve(repo, revision).id
            refs[kind][name] = commit_id if kind == "branches" else {"commit": commit_id, "message": message}
            self._write_refs(repo, refs)
            return commit_id

    def delete_ref(self, repo: RepoKey, kind: str, name: str) -> None:
        """Delete branch or tag (`kind`) ``name``; the default branch stays."""
        with self.locked():
            refs = self.refs(repo)
            if kind == "branches" and name == DEFAULT_BRANCH:
                raise Forbidden(f"cannot delete the default branch {DEFAULT_BRANCH!r}")
            if refs[kind].pop(name, None) is None:
                raise RevisionNotFound(f"{_NOUN[kind]} {name!r} not found in {repo.id!r}")
            self._write_refs(repo, refs)

    # ---- commits

    def commit(self, repo: RepoKey, commit_id: str) -> Commit:
        path = self._repo_dir(repo) / "commits" / f"{commit_id}.json"
        return Commit.from_json(json.loads(path.read_text()))

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

        ``parent`` (the client's ``parentCommit``) must be the branch head when given (compare-and-swap).
        """
        if parent is not None and not (isinstance(parent, str) and SHA1_RE.fullmatch(parent)):
            raise BadRequest(f"parentCommit {parent!r} is not a full 40-character commit id")
        with self.locked():
            refs = self.refs(repo)
            if branch not in refs["branches"]:
                raise RevisionNotFound(f"branch {branch!r} not found in {repo.id!r}; commits go to a branch")
            head = self.commit(repo, refs["branches"][branch])
            if parent is not None and head.id != parent:
                raise PreconditionFailed(
                    f"A commit has happened since {parent}: {branch!r} is now at {head.id}. Refresh and retry."
                )
            new = Commit.new(head.id, self._apply(dict(head.tree), operations), title, message, author)
            self._write_commit(repo, new)
            refs["branches"][branch] = new.id
            self._write_refs(repo, refs)  # the commit becomes visible here, atomically
            return new

    def _write_commit(self, repo: RepoKey, commit: Commit) -> None:
        path = self._repo_dir(repo) / "commits" / f"{commit.id}.json"
        self.atomic_write(path, json_bytes(asdict(commit)))

    def _apply(self, tree: dict[str, Entry], operations: list[Operation]) -> dict[str, Entry]:
        """``tree`` changed by ``operations``; raises (changing nothing on disk) when one cannot apply."""
        for op in operations:
            if isinstance(op, AddFile):
                validate_path(op.path)
                if op.entry.lfs is not None:  # its bytes must be in the store already (LFS: uploaded first)
                    self.committed_lfs(op.entry.lfs, op.path, op.entry.size)
                elif not self.blob_path(op.entry).is_file():
                    raise BadRequest(f"content {op.entry.oid} for {op.path!r} is not in the store")
                tree[op.path] = op.entry
            elif isinstance(op, DeleteFile):
                if tree.pop(validate_path(op.path), None) is None:
                    raise EntryNotFound(f"A file with this name doesn't exist: {op.path!r}")
            else:
                prefix = validate_path(op.path.rstrip("/")) + "/"
                doomed = [p for p in tree if p.startswith(prefix)]
                if not doomed:
                    raise EntryNotFound(f"A folder with this name doesn't exist: {op.path!r}")
                for p in doomed:
                    del tree[p]
        clash = sorted(folders_of(tree) & tree.keys())
        if clash:
            raise BadRequest(f"{clash[0]!r} would be both a file and a folder")
        return tree


def iter_chunks(path: Path, start: int = 0, length: int | None = None) -> Iterator[bytes]:
    """Read ``length`` bytes of ``path`` from ``start`` (to the end when None) in 1 MiB chunks."""
    with open(path, "rb") as f:
        f.seek(start)
        remaining = length if length is not None else os.fstat(f.fileno()).st_size - start
        while remaining > 0 and (chunk := f.read(min(CHUNK, remaining))):
            remaining -= len(chunk)
            yield chunk
