"""What a Hub repo holds at a revision, and whether a local file is the same content (LFS sha256 or git
blob id): the one comparison pushing, tagging and verifying use.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def remote_files(
    api: Any, repo_id: str, repo_type: str = "model", revision: str | None = None
) -> tuple[str | None, dict[str, Any]]:
    """(commit id, ``{path: RepoFile}``) of a repo at `revision`; ``(None, {})`` when the repo does not exist."""
    from huggingface_hub.errors import RepositoryNotFoundError
    from huggingface_hub.hf_api import RepoFile

    try:
        sha = api.repo_info(repo_id, repo_type=repo_type, revision=revision).sha
    except RepositoryNotFoundError:
        return None, {}
    tree = api.list_repo_tree(repo_id, repo_type=repo_type, revision=sha, recursive=True)
    return sha, {f.path: f for f in tree if isinstance(f, RepoFile)}


def content_id(remote: Any) -> str:
    """How the Hub names a remote file's content: LFS sha256, or the git blob id of a regular file."""
    return remote.lfs.sha256 if remote.lfs is not None else remote.blob_id


def difference(local: Path, sha256: str, remote: Any | None) -> str | None:
    """None when the remote file holds the bytes of `local` (whose sha256 is `sha256`); else what differs."""
    from huggingface_hub.utils.sha import git_hash

    if remote is None:
        return "missing on the Hub"
    if remote.lfs is not None:
        return None if remote.lfs.sha256 == sha256 else f"sha256 {remote.lfs.sha256[:12]}… on the Hub"
    return None if remote.blob_id == git_hash(local.read_bytes()) else "other content on the Hub"
