"""On-disk store behind the local Hub: content-addressed blobs, JSON commits and refs per repo.

Layout under ``root``::

    objects/git/ab/cdef...     regular file contents, named by their git blob sha1
    objects/lfs/ab/cdef...     LFS file contents, named by their sha256
    repos/<type>s/<ns>/<name>/ repo.json, refs.json, commits/<sha1>.json
    tmp/                       partial writes (same filesystem, so ``os.replace`` is atomic)

Every file is written to ``tmp/`` and moved into place with ``os.replace``. A commit is visible
only once ``refs.json`` is replaced, after its commit object is on disk, so a crash or an error at
any point leaves the repo exactly as it was. Blobs are shared by all repos and never deleted
(deleting a repo leaves its content behind, like an unreferenced git object).

One process owns a root at a time; a lock serialises writes between the server's threads.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
import secrets
import shutil
import tempfile
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hubkit.errors import HubkitError

REPO_TYPES = ("model", "dataset", "space")
DEFAULT_BRANCH = "main"
LOCAL_USER = "hubkit-local"
LOCAL_ORGS = ("hubkit-org",)

#: Files at or above this size always go through LFS, as on the Hub.
LFS_SIZE_THRESHOLD = 10 * 1024 * 1024
#: Patterns stored as LFS whatever their size: the core of the Hub's default ``.gitattributes``.
LFS_PATTERNS = (
    "*.7z", "*.arrow", "*.bin", "*.bz2", "*.ckpt", "*.ftz", "*.gguf", "*.gz", "*.h5", "*.joblib",
    "*.lz4", "*.mlmodel", "*.model", "*.msgpack", "*.npy", "*.npz", "*.onnx", "*.ot", "*.parquet",
    "*.pb", "*.pickle", "*.pkl", "*.png", "*.jpg", "*.jpeg", "*.pt", "*.pth", "*.rar",
    "*.safetensors", "*.tar", "*.tflite", "*.tgz", "*.wasm", "*.xz", "*.zip", "*.zst",
)  # fmt: skip
GITATTRIBUTES = "".join(f"{p} filter=lfs diff=lfs merge=lfs -text\n" for p in LFS_PATTERNS)

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_SHA1_RE = re.compile(r"^[0-9a-f]{40}$")
_CHUNK = 1024 * 1024


# --------------------------------------------------------------------------- errors


class LocalHubError(HubkitError):
    """A request the local Hub refuses; the server maps each subclass to the Hub's HTTP answer."""


class RepoNotFound(LocalHubError):
    """No repo of that type and id."""


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
    """An allowed request shape that the Hub refuses (e.g. deleting the default branch)."""


# --------------------------------------------------------------------------- value types


@dataclass(frozen=True)
class RepoKey:
    """A repo's type (``model``/``dataset``/``space``) and ``namespace/name`` id."""

    type: str
    id: str

    def __post_init__(self) -> None:
        if self.type not in REPO_TYPES:
            raise BadRequest(f"unknown repo type {self.type!r}; use one of {REPO_TYPES}")

    @property
    def is_valid(self) -> bool:
        """Whether the id is one the Hub accepts: ``namespace/name``, safe as two path segments."""
        parts = self.id.split("/")
        return (
            len(parts) == 2
            and all(_NAME_RE.match(p) for p in parts)
            and not any("--" in p or ".." in p or p.endswith(".git") for p in parts)
        )

    def validate_name(self) -> None:
        """Reject ids the Hub would refuse, so nothing unusual reaches the filesystem."""
        if not self.is_valid:
            raise BadRequest(
                f"invalid repo id {self.id!r}: expected 'namespace/name' of letters, digits and '._-' "
                "(no '--', '..' or '.git' suffix)"
            )


@dataclass(frozen=True)
class Entry:
    """One file in a tree: its git blob id, size and, for LFS files, the sha256 of the content."""

    oid: str
    size: int
    lfs: str | None = None

    @property
    def pointer(self) -> bytes | None:
        """The git-lfs pointer file that stands for the content in git (None for regular files)."""
        return lfs_pointer(self.lfs, self.size) if self.lfs else None

    def to_json(self) -> dict[str, Any]:
        return {"oid": self.oid, "size": self.size, "lfs": self.lfs}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Entry:
        return cls(oid=data["oid"], size=int(data["size"]), lfs=data.get("lfs"))


@dataclass(frozen=True)
class Commit:
    """A commit object: its parent, the full tree it records, and who wrote it when."""

    id: str
    parent: str | None
    tree: dict[str, Entry]
    title: str
    message: str
    author: str
    date: str

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "parent": self.parent,
            "title": self.title,
            "message": self.message,
            "author": self.author,
            "date": self.date,
            "tree": {p: e.to_json() for p, e in sorted(self.tree.items())},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Commit:
        tree = {p: Entry.from_json(e) for p, e in data["tree"].items()}
        fields = {k: data[k] for k in ("id", "parent", "title", "message", "author", "date")}
        return cls(tree=tree, **fields)


@dataclass
class Refs:
    """Branches (name → commit) and tags (name → commit, message) of one repo."""

    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, dict[str, str]] = field(default_factory=dict)


@dataclass(frozen=True)
class AddFile:
    path: str
    entry: Entry


@dataclass(frozen=True)
class DeleteFile:
    path: str


@dataclass(frozen=True)
class DeleteFolder:
    path: str


Operation = AddFile | DeleteFile | DeleteFolder


# --------------------------------------------------------------------------- hashing helpers


def git_blob_sha1(data: bytes) -> str:
    """The id git gives a blob: sha1 of ``blob <size>\\0`` followed by the bytes."""
    return hashlib.sha1(b"blob %d\x00" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    """The pointer text git-lfs commits in place of the content."""
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def lfs_entry(sha256: str, size: int) -> Entry:
    """Tree entry for LFS content: its git id is the pointer's, as on the Hub."""
    return Entry(oid=git_blob_sha1(lfs_pointer(sha256, size)), size=size, lfs=sha256)


def upload_mode(path: str, size: int, sample: bytes) -> str:
    """``lfs`` for large files, binary-looking samples and LFS patterns; ``regular`` otherwise."""
    name = path.rsplit("/", 1)[-1]
    if size >= LFS_SIZE_THRESHOLD or b"\x00" in sample:
        return "lfs"
    return "lfs" if any(fnmatch.fnmatch(name, p) for p in LFS_PATTERNS) else "regular"


def validate_path(path: str) -> str:
    """Reject paths that could escape the repo or that git cannot hold."""
    parts = path.split("/")
    if not path or path.startswith("/") or "\\" in path or "\x00" in path:
        raise BadRequest(f"invalid path in repo: {path!r}")
    if any(p in ("", ".", "..", ".git") for p in parts):
        raise BadRequest(f"invalid path in repo: {path!r} (empty, '.', '..' or '.git' segment)")
    return path


def now_iso() -> str:
    """UTC time in the Hub's format (``2024-01-31T12:00:00.000Z``)."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


# --------------------------------------------------------------------------- the store


class HubStore:
    """Repos, refs, commits and blobs under one directory; safe to share between threads."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        for sub in ("objects/git", "objects/lfs", "repos", "tmp"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()

    # ---- low-level files

    def _atomic_write(self, path: Path, data: bytes) -> None:
        """Write ``data`` to ``path`` through a synced temp file, so readers see old or new, never half."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.root / "tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _write_json(self, path: Path, obj: Any) -> None:
        self._atomic_write(path, json.dumps(obj, indent=1, sort_keys=True).encode())

    @staticmethod
    def _read_json(path: Path) -> Any:
        return json.loads(path.read_text())

    def _object_path(self, kind: str, digest: str) -> Path:
        return self.root / "objects" / kind / digest[:2] / digest[2:]

    def _repo_dir(self, repo: RepoKey) -> Path:
        return self.root / "repos" / f"{repo.type}s" / repo.id

    # ---- blobs

    def blob_path(self, entry: Entry) -> Path:
        """Where the content of ``entry`` lives on disk."""
        return self._object_path("lfs", entry.lfs) if entry.lfs else self._object_path("git", entry.oid)

    def put_regular(self, data: bytes) -> Entry:
        """Store a regular (non-LFS) file's bytes under their git blob id."""
        entry = Entry(oid=git_blob_sha1(data), size=len(data))
        path = self.blob_path(entry)
        if not path.exists():
            self._atomic_write(path, data)
        return entry

    def lfs_size(self, sha256: str) -> int | None:
        """Size of a stored LFS object, or None when it was never uploaded."""
        if not _SHA256_RE.match(sha256):
            return None
        path = self._object_path("lfs", sha256)
        return path.stat().st_size if path.exists() else None

    def put_lfs(self, sha256: str, size: int, chunks: Iterable[bytes]) -> int:
        """Store an LFS object streamed as ``chunks``; verify size and sha256 before it becomes visible.

        Returns the number of bytes received. A failing ``chunks`` iterator (a dropped connection)
        or a mismatch discards the partial file, so a stored object is always complete and correct.
        """
        if not _SHA256_RE.match(sha256):
            raise BadRequest(f"invalid LFS oid {sha256!r}: expected 64 lowercase hex characters")
        digest, received = hashlib.sha256(), 0
        fd, tmp = tempfile.mkstemp(dir=self.root / "tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                for chunk in chunks:
                    digest.update(chunk)
                    f.write(chunk)
                    received += len(chunk)
            if received != size or digest.hexdigest() != sha256:
                raise BadRequest(
                    f"LFS upload rejected: received {received} bytes with sha256 {digest.hexdigest()}, "
                    f"expected {size} bytes with sha256 {sha256}"
                )
            path = self._object_path("lfs", sha256)
            path.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, path)
        finally:
            Path(tmp).unlink(missing_ok=True)
        return received

    # ---- repos

    def create_repo(self, repo: RepoKey, *, private: bool = False, sdk: str | None = None) -> dict[str, Any]:
        """Create a repo with the Hub's initial commit (a ``.gitattributes`` with the LFS patterns)."""
        repo.validate_name()
        with self._lock:
            folder = self._repo_dir(repo)
            if (folder / "repo.json").exists():
                raise Conflict(f"You already created this {repo.type} repo: {repo.id}")
            meta = {"type": repo.type, "id": repo.id, "private": bool(private), "sdk": sdk}
            meta.update(createdAt=now_iso(), _id=secrets.token_hex(12))
            entry = self.put_regular(GITATTRIBUTES.encode())
            first = self._new_commit(None, {".gitattributes": entry}, "initial commit", "", author="system")
            self._write_commit(repo, first)
            self._write_refs(repo, Refs(branches={DEFAULT_BRANCH: first.id}))
            self._write_json(folder / "repo.json", meta)  # written last: the repo exists from here on
            return meta

    def delete_repo(self, repo: RepoKey) -> None:
        """Remove a repo's refs and history (its blobs stay in the shared object store)."""
        with self._lock:
            folder = self._repo_dir(repo)
            self.repo_meta(repo)
            trash = self.root / "tmp" / f"deleted-{secrets.token_hex(8)}"
            os.replace(folder, trash)  # atomic: the repo disappears at once
            shutil.rmtree(trash, ignore_errors=True)

    def repo_meta(self, repo: RepoKey) -> dict[str, Any]:
        """The repo's creation record; raises RepoNotFound."""
        path = self._repo_dir(repo) / "repo.json"
        if not repo.is_valid or not path.is_file():
            raise RepoNotFound(f"{repo.type} repo {repo.id!r} not found")
        return self._read_json(path)

    # ---- refs and revisions

    def refs(self, repo: RepoKey) -> Refs:
        self.repo_meta(repo)
        data = self._read_json(self._repo_dir(repo) / "refs.json")
        return Refs(branches=data["branches"], tags=data["tags"])

    def _write_refs(self, repo: RepoKey, refs: Refs) -> None:
        self._write_json(self._repo_dir(repo) / "refs.json", {"branches": refs.branches, "tags": refs.tags})

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
        if _SHA1_RE.match(rev) and (self._repo_dir(repo) / "commits" / f"{rev}.json").is_file():
            return self.commit(repo, rev)
        raise RevisionNotFound(f"revision {rev!r} not found in {repo.type} repo {repo.id!r}")

    def create_branch(self, repo: RepoKey, name: str, start: str | None = None) -> str:
        """Create branch ``name`` at ``start`` (default: head of main); returns its commit id."""
        self._validate_ref_name(name)
        with self._lock:
            refs = self.refs(repo)
            if name in refs.branches:
                raise Conflict(f"branch {name!r} already exists in {repo.id!r}")
            refs.branches[name] = self.resolve(repo, start).id
            self._write_refs(repo, refs)
            return refs.branches[name]

    def delete_branch(self, repo: RepoKey, name: str) -> None:
        with self._lock:
            refs = self.refs(repo)
            if name == DEFAULT_BRANCH:
                raise Forbidden(f"cannot delete the default branch {DEFAULT_BRANCH!r}")
            if refs.branches.pop(name, None) is None:
                raise RevisionNotFound(f"branch {name!r} not found in {repo.id!r}")
            self._write_refs(repo, refs)

    def create_tag(self, repo: RepoKey, name: str, revision: str | None, message: str = "") -> str:
        """Tag the commit ``revision`` names; returns its id."""
        self._validate_ref_name(name)
        with self._lock:
            refs = self.refs(repo)
            if name in refs.tags:
                raise Conflict(f"tag {name!r} already exists in {repo.id!r}")
            commit_id = self.resolve(repo, revision).id
            refs.tags[name] = {"commit": commit_id, "message": message}
            self._write_refs(repo, refs)
            return commit_id

    def delete_tag(self, repo: RepoKey, name: str) -> None:
        with self._lock:
            refs = self.refs(repo)
            if refs.tags.pop(name, None) is None:
                raise RevisionNotFound(f"tag {name!r} not found in {repo.id!r}")
            self._write_refs(repo, refs)

    @staticmethod
    def _validate_ref_name(name: str) -> None:
        if not name or name.startswith(("/", "-", "refs/")) or ".." in name or _SHA1_RE.match(name):
            raise BadRequest(f"invalid branch or tag name {name!r}")
        if any(c in name for c in " ~^:?*[\\\x00"):
            raise BadRequest(f"invalid branch or tag name {name!r}")

    # ---- commits

    def commit(self, repo: RepoKey, commit_id: str) -> Commit:
        return Commit.from_json(self._read_json(self._repo_dir(repo) / "commits" / f"{commit_id}.json"))

    def history(self, repo: RepoKey, revision: str | None) -> list[Commit]:
        """Commits reachable from ``revision`` through first parents, newest first."""
        commits = [self.resolve(repo, revision)]
        while commits[-1].parent is not None:
            commits.append(self.commit(repo, commits[-1].parent))
        return commits

    def last_change(self, repo: RepoKey, head: Commit, path: str) -> Commit:
        """The newest commit, up to ``head``, that changed the file or folder at ``path``."""
        current, state = head, _subtree(head.tree, path)
        while current.parent is not None:
            parent = self.commit(repo, current.parent)
            if _subtree(parent.tree, path) != state:
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

        ``parent`` (the client's ``parentCommit``) must be the branch head when given, so that a
        commit prepared against an older state cannot silently overwrite newer work.
        """
        with self._lock:
            refs = self.refs(repo)
            if branch not in refs.branches:
                raise RevisionNotFound(f"branch {branch!r} not found in {repo.id!r}; commits go to a branch")
            head = self.commit(repo, refs.branches[branch])
            if parent is not None and not head.id.startswith(parent):
                raise PreconditionFailed(
                    f"A commit has happened since {parent}: {branch!r} is now at {head.id}. Refresh and retry."
                )
            tree = self._apply_operations(dict(head.tree), operations)
            new = self._new_commit(head.id, tree, title, message, author=author)
            self._write_commit(repo, new)
            refs.branches[branch] = new.id
            self._write_refs(repo, refs)  # the commit becomes visible here, atomically
            return new

    def _apply_operations(self, tree: dict[str, Entry], operations: list[Operation]) -> dict[str, Entry]:
        for op in operations:
            validate_path(op.path.rstrip("/") if isinstance(op, DeleteFolder) else op.path)
            if isinstance(op, AddFile):
                self._check_content(op)
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
        _check_no_file_folder_clash(tree)
        return tree

    def _check_content(self, op: AddFile) -> None:
        """Every added file's bytes must already be in the store (LFS ones: uploaded beforehand)."""
        entry = op.entry
        if entry.lfs is not None:
            size = self.lfs_size(entry.lfs)
            if size is None:
                raise BadRequest(
                    f"LFS object {entry.lfs} for {op.path!r} was never uploaded: upload it through "
                    "the LFS batch API before committing a pointer to it"
                )
            if size != entry.size:
                raise BadRequest(f"LFS object {entry.lfs} for {op.path!r} has {size} bytes, not {entry.size}")
        elif not self.blob_path(entry).is_file():
            raise BadRequest(f"content {entry.oid} for {op.path!r} is not in the store")

    def _new_commit(
        self, parent: str | None, tree: dict[str, Entry], title: str, message: str, *, author: str
    ) -> Commit:
        """A commit whose id is the sha1 of its content, like a git commit id."""
        fields = {"parent": parent, "title": title, "message": message, "author": author, "date": now_iso()}
        content = {**fields, "tree": {p: e.to_json() for p, e in sorted(tree.items())}}
        commit_id = hashlib.sha1(json.dumps(content, sort_keys=True).encode()).hexdigest()
        return Commit(id=commit_id, tree=tree, **fields)

    def _write_commit(self, repo: RepoKey, commit: Commit) -> None:
        self._write_json(self._repo_dir(repo) / "commits" / f"{commit.id}.json", commit.to_json())


# --------------------------------------------------------------------------- tree helpers


def _subtree(tree: dict[str, Entry], path: str) -> Any:
    """The entry at ``path``, or the entries under it when it is a folder (for change detection)."""
    if path in tree:
        return tree[path]
    prefix = path.rstrip("/") + "/"
    return {p: e for p, e in tree.items() if p.startswith(prefix)}


def _check_no_file_folder_clash(tree: dict[str, Entry]) -> None:
    clash = sorted(folders_of(tree) & tree.keys())
    if clash:
        raise BadRequest(f"{clash[0]!r} would be both a file and a folder")


def folders_of(tree: dict[str, Entry]) -> set[str]:
    """Every folder path implied by the files in ``tree``."""
    return {"/".join(p.split("/")[:i]) for p in tree for i in range(1, p.count("/") + 1)}


def folder_oid(tree: dict[str, Entry], folder: str) -> str:
    """A stable id for a folder's content (a hash over its files, not git's tree id)."""
    prefix = folder + "/"
    listing = "".join(f"{p}\x00{e.oid}\n" for p, e in sorted(tree.items()) if p.startswith(prefix))
    return hashlib.sha1(listing.encode()).hexdigest()


def iter_chunks(path: Path, start: int = 0, length: int | None = None) -> Iterator[bytes]:
    """Read ``length`` bytes of ``path`` from ``start`` (to the end when None) in 1 MiB chunks."""
    with open(path, "rb") as f:
        f.seek(start)
        remaining = length if length is not None else os.fstat(f.fileno()).st_size - start
        while remaining > 0:
            chunk = f.read(min(_CHUNK, remaining))
            if not chunk:
                return
            remaining -= len(chunk)
            yield chunk
