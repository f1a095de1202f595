"""Content-addressed blobs of the local Hub, and the atomic file writes everything else uses.

Layout under ``root``: ``objects/git/ab/cdef...`` (regular files by git blob sha1),
``objects/lfs/ab/cdef...`` (LFS files by sha256), ``objects/lfs-links/ab/<sha256>/`` (the repos
that committed an LFS object and the users who uploaded it), ``tmp/`` (partial writes, on the same
filesystem so that ``os.replace`` is atomic). Blobs are stored once and never deleted; the links
let the server hand an object only to callers who can read a repo holding it, so knowing a
private file's sha256 is not enough to get its bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from hubkit.localhub.errors import BadRequest, TooLarge
from hubkit.localhub.objects import SHA256_RE, Entry, RepoKey, git_blob_sha1

CHUNK = 1024 * 1024


class BlobStore:
    """Blobs and atomic writes under one root."""

    def __init__(self, root: Path) -> None:
        self.root = root
        for sub in ("objects/git", "objects/lfs", "tmp"):
            (root / sub).mkdir(parents=True, exist_ok=True)

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    def clean_tmp(self) -> int:
        """Remove what killed writers left in ``tmp/``; call only while holding the root's server lock."""
        removed = 0
        for leftover in self.tmp.iterdir():
            if leftover.is_dir() and not leftover.is_symlink():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)
            removed += 1
        return removed

    def atomic_write(self, path: Path, data: bytes) -> None:
        """Write ``data`` to ``path`` through a synced temp file, so readers see old or new, never half."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.tmp)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def write_json(self, path: Path, obj: Any) -> None:
        self.atomic_write(path, json.dumps(obj, indent=1, sort_keys=True).encode())

    @staticmethod
    def read_json(path: Path) -> Any:
        return json.loads(path.read_text())

    def _object_path(self, kind: str, digest: str) -> Path:
        return self.root / "objects" / kind / digest[:2] / digest[2:]

    def blob_path(self, entry: Entry) -> Path:
        """Where the content of ``entry`` lives on disk."""
        return self._object_path("lfs", entry.lfs) if entry.lfs else self._object_path("git", entry.oid)

    def put_regular(self, data: bytes) -> Entry:
        """Store a regular (non-LFS) file's bytes under their git blob id."""
        entry = Entry(oid=git_blob_sha1(data), size=len(data))
        path = self.blob_path(entry)
        if not path.exists():
            self.atomic_write(path, data)
        return entry

    def lfs_size(self, sha256: str) -> int | None:
        """Size of a stored LFS object, or None when it was never uploaded."""
        if not isinstance(sha256, str) or not SHA256_RE.fullmatch(sha256):
            return None
        path = self._object_path("lfs", sha256)
        return path.stat().st_size if path.exists() else None

    def _links(self, sha256: str) -> Path:
        return self.root / "objects" / "lfs-links" / sha256[:2] / sha256

    def link_lfs(self, sha256: str, holder: RepoKey | str) -> None:
        """Record who holds the LFS object `sha256`: a repo that committed it, or a user who uploaded it."""
        name = (
            f"{holder.type}~{holder.id.replace('/', '~')}"
            if isinstance(holder, RepoKey)
            else f"user~{holder}"
        )
        folder = self._links(sha256)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).touch()

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
            elif kind in ("model", "dataset", "space") and ns and name:
                repos.append(RepoKey(kind, f"{ns}/{name}"))
        return repos, users

    def put_lfs(self, sha256: str, size: int, chunks: Iterable[bytes]) -> int:
        """Store an LFS object streamed as ``chunks``; verify size and sha256 before it becomes visible.

        Returns the number of bytes received. Reading stops as soon as more than ``size`` bytes
        arrive (TooLarge). A failing ``chunks`` iterator (a dropped connection) or a mismatch
        discards the partial file, so a stored object is always complete and correct.
        """
        if not SHA256_RE.fullmatch(sha256):
            raise BadRequest(f"invalid LFS oid {sha256!r}: expected 64 lowercase hex characters")
        digest, received = hashlib.sha256(), 0
        fd, tmp = tempfile.mkstemp(dir=self.tmp)
        try:
            with os.fdopen(fd, "wb") as f:
                for chunk in chunks:
                    received += len(chunk)
                    if received > size:
                        raise TooLarge(
                            f"LFS upload cut off: more than the {size} bytes its URL was issued for"
                        )
                    digest.update(chunk)
                    f.write(chunk)
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


def iter_chunks(path: Path, start: int = 0, length: int | None = None) -> Iterator[bytes]:
    """Read ``length`` bytes of ``path`` from ``start`` (to the end when None) in 1 MiB chunks."""
    with open(path, "rb") as f:
        f.seek(start)
        remaining = length if length is not None else os.fstat(f.fileno()).st_size - start
        while remaining > 0:
            chunk = f.read(min(CHUNK, remaining))
            if not chunk:
                return
            remaining -= len(chunk)
            yield chunk
