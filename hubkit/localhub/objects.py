"""The local Hub's value types and the rules for names, paths and hashes (no I/O).

Names are checked with full matches (``re.fullmatch``): a trailing newline is not a name.
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from hubkit.localhub.errors import BadRequest

REPO_TYPES = ("model", "dataset", "space")
DEFAULT_BRANCH = "main"

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

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}")
SHA256_RE = re.compile(r"[0-9a-f]{64}")
SHA1_RE = re.compile(r"[0-9a-f]{40}")
CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


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
        if not isinstance(self.id, str):
            return False
        parts = self.id.split("/")
        return (
            len(parts) == 2
            and all(isinstance(p, str) and NAME_RE.fullmatch(p) for p in parts)
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
    """Reject paths that could escape the repo, that git cannot hold, or with control characters."""
    if not isinstance(path, str):
        raise BadRequest(f"invalid path in repo: {path!r} (not a string)")
    parts = path.split("/")
    if not path or path.startswith("/") or "\\" in path or CONTROL_RE.search(path):
        raise BadRequest(f"invalid path in repo: {path!r}")
    if any(p in ("", ".", "..", ".git") for p in parts):
        raise BadRequest(f"invalid path in repo: {path!r} (empty, '.', '..' or '.git' segment)")
    return path


def now_iso() -> str:
    """UTC time in the Hub's format (``2024-01-31T12:00:00.000Z``)."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def validate_ref_name(name: object) -> str:
    """Reject branch and tag names git would refuse or that could be read as a path or a commit id."""
    if (
        not isinstance(name, str)
        or not name
        or name.startswith(("/", "-", "refs/"))
        or ".." in name
        or SHA1_RE.fullmatch(name)
        or any(c in name for c in " ~^:?*[\\\x00")
        or not name.isprintable()
    ):
        raise BadRequest(f"invalid branch or tag name {name!r}")
    return name


def subtree(tree: dict[str, Entry], path: str) -> Any:
    """The entry at ``path``, or the entries under it when it is a folder (for change detection)."""
    if path in tree:
        return tree[path]
    prefix = path.rstrip("/") + "/"
    return {p: e for p, e in tree.items() if p.startswith(prefix)}


def check_no_file_folder_clash(tree: dict[str, Entry]) -> None:
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
