"""Publishing: one commit per repo holding every file of a local folder, then a tag; remote sha256s."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hubkit.errors import CheckpointError
from hubkit.hub.redaction import protect
from hubkit.hub.remote import content_id, difference, remote_files
from hubkit.provenance import sha256_file, sha256_files

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


def hub_api(endpoint: str | None, token: str | bool | None) -> Any:
    """An ``HfApi`` for `endpoint`; its token (given or found by huggingface_hub) is kept out of logs."""
    from huggingface_hub import HfApi, get_token

    protect(token, get_token())
    return HfApi(endpoint=endpoint, token=token)


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

    Unchanged files are not sent, remote files absent from `folder` are deleted (``.gitattributes``
    kept), no change means no commit. The commit names its parent, so a concurrent push fails rather
    than being overwritten; an existing tag on another commit is never moved.
    """
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete

    folder = Path(folder)
    api = hub_api(endpoint, token)
    local = sha256s if sha256s is not None else sha256_files(folder)
    head, remote = remote_files(api, repo_id, repo_type, branch)
    created_repo = head is None
    if created_repo:
        api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)
        head, remote = remote_files(api, repo_id, repo_type, branch)
    result = PushResult(
        repo_id, repo_type, head or "", created_commit=False, created_repo=created_repo, tag=tag
    )
    ops: list = []
    for rel, sha in sorted(local.items()):
        if difference(folder / rel, sha, remote.get(rel)) is None:
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
    api: Any, repo_id: str, tag: str, commit: str, repo_type: str = "model", message: str | None = None
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


def _content(api: Any, repo_id: str, repo_type: str, revision: str) -> dict[str, str]:
    """``{path: content id}`` at a revision, the Hub's own file left out."""
    _, files = remote_files(api, repo_id, repo_type, revision)
    return {p: content_id(f) for p, f in files.items() if p not in KEEP_REMOTE}


def remote_differences(
    api: Any, repo_id: str, repo_type: str, commit: str, folder: Path, files: dict[str, str]
) -> list[str]:
    """``path (what differs)`` for every file where the repo at `commit` and `folder` (`files`: sha256s) disagree."""
    _, remote = remote_files(api, repo_id, repo_type, commit)
    bad = []
    for path in sorted((set(remote) | set(files)) - set(KEEP_REMOTE)):
        why = (
            difference(folder / path, files[path], remote.get(path)) if path in files else "not in the bundle"
        )
        if why is not None:
            bad.append(f"{path} ({why})")
    return bad


def remote_sha256s(
    repo_id: str,
    revision: str | None = None,
    repo_type: str = "model",
    endpoint: str | None = None,
    token: str | bool | None = None,
) -> dict[str, str]:
    """``{path: sha256}`` of every file in a repo at `revision` (regular files downloaded to hash)."""
    api = hub_api(endpoint, token)
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
