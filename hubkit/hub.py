"""Where checkpoint files come from: a local folder, or a Hub repo at a revision and subfolder.

Downloads go through ``huggingface_hub.snapshot_download``, so ``HF_HUB_OFFLINE``, ``HF_ENDPOINT``
and the Hub cache behave exactly as they do for transformers.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hubkit.errors import CheckpointError
from hubkit.provenance import sha256_file, sha256_files


def resolve(
    repo_or_dir: str | Path,
    revision: str | None = None,
    subfolder: str | None = None,
    repo_type: str = "model",
    endpoint: str | None = None,
    token: str | bool | None = None,
) -> Path:
    """A local folder holding the checkpoint named by `repo_or_dir` (+ `subfolder`) at `revision`."""
    local = Path(repo_or_dir)
    if local.is_dir():
        if revision is not None:
            raise CheckpointError(
                f"{local} is a local folder; `revision={revision!r}` only applies to Hub repos"
            )
        folder = local / subfolder if subfolder else local
        if not folder.is_dir():
            raise CheckpointError(f"{folder}: no such checkpoint folder (subfolder {subfolder!r} of {local})")
        return folder
    repo_id = str(repo_or_dir)
    if repo_id.startswith((".", "/")) or repo_id.count("/") > 1:
        raise CheckpointError(f"{repo_id}: neither an existing folder nor a Hub repo id like 'org/name'")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

    patterns = [f"{subfolder.strip('/')}/**"] if subfolder else None
    try:
        root = snapshot_download(
            repo_id,
            revision=revision,
            repo_type=repo_type,
            allow_patterns=patterns,
            endpoint=endpoint,
            token=token,
        )
    except RevisionNotFoundError as exc:
        raise CheckpointError(
            f"{repo_id}: revision {revision!r} not found (a branch, tag or commit)"
        ) from exc
    except RepositoryNotFoundError as exc:
        raise CheckpointError(f"{repo_id}: no such repo on the Hub endpoint (or no access)") from exc
    except LocalEntryNotFoundError as exc:
        raise CheckpointError(
            f"{repo_id}@{revision or 'main'} is not in the local Hub cache and HF_HUB_OFFLINE is set; "
            "download it once online, or pass a local folder"
        ) from exc
    folder = Path(root) / subfolder if subfolder else Path(root)
    if not folder.is_dir():
        raise CheckpointError(f"{repo_id}@{revision or 'main'}: no subfolder {subfolder!r} in the repo")
    return folder


# ---------------------------------------------------------------------------------------------
# Publishing: one commit per repo holding every file of a local folder, then a tag; verification.
# ---------------------------------------------------------------------------------------------
KEEP_REMOTE = (".gitattributes",)  # the Hub's own file: never deleted by a push


@dataclass
class PushResult:
    """What one `push_folder` did to one repo."""

    repo_id: str
    repo_type: str
    commit: str  # the commit the branch (and the tag) now point at
    created_commit: bool
    uploaded: list[str] = field(default_factory=list)  # paths added or changed by the commit
    deleted: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    tag: str | None = None
    tag_created: bool = False
    created_repo: bool = False


def git_blob_sha1(path: str | Path) -> str:
    """The git object id of a file's content (what the Hub reports as ``blob_id`` for regular files)."""
    data = Path(path).read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def remote_files(
    api, repo_id: str, repo_type: str = "model", revision: str | None = None
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


def _same(local: Path, sha256: str, remote) -> bool:
    if remote is None:
        return False
    if remote.lfs is not None:
        return remote.lfs.sha256 == sha256
    return remote.blob_id == git_blob_sha1(local)


def push_folder(
    folder: str | Path,
    repo_id: str,
    *,
    commit_message: str,
    repo_type: str = "model",
    tag: str | None = None,
    tag_message: str | None = None,
    endpoint: str | None = None,
    token: str | bool | None = None,
    private: bool = False,
    sha256s: dict[str, str] | None = None,
    branch: str = "main",
) -> PushResult:
    """Make `repo_id` hold exactly the files of `folder` in **one** commit, then tag that commit.

    Files whose content is already there (LFS sha256, or git blob id for regular files) are not sent;
    remote files absent from `folder` are deleted in the same commit (``.gitattributes`` is kept).
    Nothing changed means no commit at all. The commit names its parent, so a concurrent push fails
    instead of being overwritten. A failure before the commit leaves the branch as it was; LFS objects
    already uploaded are reused by the next attempt. An existing tag on another commit is never moved.
    `sha256s` (``{relative path: sha256}``) saves re-hashing when the caller already has them.
    """
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi

    folder = Path(folder)
    api = HfApi(endpoint=endpoint, token=token)
    local = sha256s if sha256s is not None else sha256_files(folder)
    head, remote = remote_files(api, repo_id, repo_type, branch)
    created_repo = head is None
    if created_repo:
        api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)
        head, remote = remote_files(api, repo_id, repo_type, branch)
    result = PushResult(
        repo_id=repo_id,
        repo_type=repo_type,
        commit=head or "",
        created_commit=False,
        created_repo=created_repo,
        tag=tag,
    )
    ops: list = []
    for rel, sha in sorted(local.items()):
        if _same(folder / rel, sha, remote.get(rel)):
            result.unchanged.append(rel)
        else:
            result.uploaded.append(rel)
            ops.append(CommitOperationAdd(path_in_repo=rel, path_or_fileobj=str(folder / rel)))
    result.deleted = sorted(p for p in remote if p not in local and p not in KEEP_REMOTE)
    ops += [CommitOperationDelete(path_in_repo=p) for p in result.deleted]
    if ops:
        info = api.create_commit(
            repo_id,
            ops,
            commit_message=commit_message,
            repo_type=repo_type,
            revision=branch,
            parent_commit=head,
        )
        result.commit, result.created_commit = info.oid, True
    if tag is not None:
        result.tag_created = ensure_tag(api, repo_id, tag, result.commit, repo_type, tag_message)
    return result


def ensure_tag(
    api, repo_id: str, tag: str, commit: str, repo_type: str = "model", message: str | None = None
) -> bool:
    """Tag `commit` as `tag`; ``False`` when the tag already names the same files. Never moves a tag."""
    refs = api.list_repo_refs(repo_id, repo_type=repo_type)
    existing = {t.name: t.target_commit for t in refs.tags}
    if tag not in existing:
        api.create_tag(repo_id, tag=tag, revision=commit, tag_message=message, repo_type=repo_type)
        return True
    if existing[tag] == commit or _content(api, repo_id, repo_type, existing[tag]) == _content(
        api, repo_id, repo_type, commit
    ):
        return False
    raise CheckpointError(
        f"{repo_id}: tag {tag!r} already names commit {existing[tag][:12]}, which holds other files; a release "
        "tag is never moved. Give this release a new `tag` (e.g. bump the version)"
    )


def _content(api, repo_id: str, repo_type: str, revision: str) -> dict[str, str]:
    """``{path: content id}`` at a revision (LFS sha256 or git blob id), the Hub's own file left out."""
    _, files = remote_files(api, repo_id, repo_type, revision)
    return {
        p: (f.lfs.sha256 if f.lfs is not None else f.blob_id)
        for p, f in files.items()
        if p not in KEEP_REMOTE
    }


def remote_sha256s(
    repo_id: str,
    revision: str | None = None,
    repo_type: str = "model",
    endpoint: str | None = None,
    token: str | bool | None = None,
) -> dict[str, str]:
    """``{path: sha256}`` of every file in a repo at `revision`: LFS sha256 from the tree, regular files downloaded.

    Regular files are small text (cards, YAML, JSON); the Hub only reports their git blob id, so they
    are fetched into a temporary folder and hashed, making the result comparable with local sha256s.
    """
    import tempfile

    from huggingface_hub import HfApi

    api = HfApi(endpoint=endpoint, token=token)
    sha, files = remote_files(api, repo_id, repo_type, revision)
    if sha is None:
        raise CheckpointError(f"{repo_id}: no such {repo_type} repo on {api.endpoint}")
    out: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="hubkit-verify-") as tmp:
        for path, f in sorted(files.items()):
            if f.lfs is not None:
                out[path] = f.lfs.sha256
                continue
            local = api.hf_hub_download(repo_id, path, repo_type=repo_type, revision=sha, local_dir=tmp)
            out[path] = sha256_file(local)
    return out
