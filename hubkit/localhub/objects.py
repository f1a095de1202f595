"""The local Hub's value types and the rules for names, paths and hashes (no I/O; names fullmatch)."""

from __future__ import annotations

import fnmatch
import hashlib
import json
import re
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any

from huggingface_hub.utils.sha import git_hash

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
        parts = self.id.split("/") if isinstance(self.id, str) else []
        return (
            len(parts) == 2
            and all(NAME_RE.fullmatch(p) for p in parts)
            and not any("--" in p or ".." in p or p.endswith(".git") for p in parts)
        )

    def validate_name(self) -> None:
        """Reject ids the Hub would refuse, so nothing unusual reaches the filesystem."""
        if not self.is_valid:
            raise BadRequest(
                f"invalid repo id {self.id!r}: expected 'namespace/name' of letters, digits and '._-' "
                "(no '--', '..' or '.git' suffix)"
            )

    @property
    def namespace(self) -> str:
        return self.id.split("/", 1)[0]


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

    @classmethod
    def new(cls, parent: str | None, tree: dict[str, Entry], title: str, message: str, author: str) -> Commit:
        """A commit whose id is the sha1 of its content, like a git commit id."""
        fields = {"parent": parent, "title": title, "message": message, "author": author, "date": now_iso()}
        content = {**fields, "tree": {p: asdict(e) for p, e in tree.items()}}
        return cls(id=hashlib.sha1(json_bytes(content)).hexdigest(), tree=tree, **fields)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Commit:
        return cls(**{**data, "tree": {p: Entry(**e) for p, e in data["tree"].items()}})


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


def json_bytes(obj: Any) -> bytes:
    """The canonical JSON of `obj` (sorted keys), as stored on disk and hashed into commit ids."""
    return json.dumps(obj, indent=1, sort_keys=True).encode()


def lfs_pointer(sha256: str, size: int) -> bytes:
    """The pointer text git-lfs commits in place of the content."""
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def lfs_entry(sha256: str, size: int) -> Entry:
    """Tree entry for LFS content: its git id is the pointer's, as on the Hub."""
    return Entry(oid=git_hash(lfs_pointer(sha256, size)), size=size, lfs=sha256)


def upload_mode(path: str, size: int, sample: bytes) -> str:
    """``lfs`` for large files, binary-looking samples and LFS patterns; ``regular`` otherwise."""
    name = path.rsplit("/", 1)[-1]
    big_or_binary = size >= LFS_SIZE_THRESHOLD or b"\x00" in sample
    return "lfs" if big_or_binary or any(fnmatch.fnmatch(name, p) for p in LFS_PATTERNS) else "regular"


def validate_path(path: str) -> str:
    """Reject paths that could escape the repo, that git cannot hold, or with control characters."""
    if not isinstance(path, str):
        raise BadRequest(f"invalid path in repo: {path!r} (not a string)")
    if not path or path.startswith("/") or "\\" in path or CONTROL_RE.search(path):
        raise BadRequest(f"invalid path in repo: {path!r}")
    if any(p in ("", ".", "..", ".git") for p in path.split("/")):
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


def folders_of(tree: dict[str, Entry]) -> set[str]:
    return {"/".join(p.split("/")[:i]) for p in tree for i in range(1, p.count("/") + 1)}


def folder_oid(tree: dict[str, Entry], folder: str) -> str:
    """A stable id for a folder's content (a hash over its files, not git's tree id)."""
    prefix = folder + "/"
    listing = "".join(f"{p}\x00{e.oid}\n" for p, e in sorted(tree.items()) if p.startswith(prefix))
    return hashlib.sha1(listing.encode()).hexdigest()
