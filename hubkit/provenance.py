"""Provenance shared by eval and release: file hashes, git state, library versions."""

from __future__ import annotations

import hashlib
import importlib.metadata
import platform
import subprocess
from pathlib import Path

_CHUNK = 1 << 20

# Distributions whose versions change what an NLA computes or how its numbers are made.
LIBRARIES = (
    "hubkit",
    "torch",
    "transformers",
    "peft",
    "tokenizers",
    "safetensors",
    "accelerate",
    "bitsandbytes",
    "numpy",
    "pyarrow",
    "datasets",
    "huggingface_hub",
    "evaluate",
    "matplotlib",
)


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of one file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def sha256_files(folder: str | Path) -> dict[str, str]:
    """``{relative posix path: sha256}`` of every file under `folder` (no dot-folders; links followed)."""
    folder = Path(folder)
    if folder.is_file():
        return {folder.name: sha256_file(folder)}
    out: dict[str, str] = {}
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts[:-1]) or not p.is_file():
            continue
        out[rel.as_posix()] = sha256_file(p)
    return out


def git_state(path: str | Path | None = None) -> dict[str, str | bool | None]:
    """``{commit, dirty}`` of the git work tree holding `path` (tracked files only); None outside git."""
    where = Path(path) if path is not None else Path(__file__).resolve().parent
    if where.is_file():
        where = where.parent

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=where, capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None}
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def library_versions(names: tuple[str, ...] = LIBRARIES) -> dict[str, str | None]:
    """Installed versions of `names` (``None`` when not installed), plus the Python version."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out
