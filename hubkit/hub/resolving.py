"""Where checkpoint files come from: a local folder, or a Hub repo at a revision and subfolder
(``snapshot_download``: ``HF_HUB_OFFLINE``, ``HF_ENDPOINT`` and the cache behave as for transformers).
"""

from __future__ import annotations

from pathlib import Path

from hubkit import constants
from hubkit.errors import CheckpointError
from hubkit.hub.redaction import protect


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
    from huggingface_hub import get_token, snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

    protect(token, get_token())
    # a subfolder's files are checked on load against the repo's provenance.json (`checkpoint.verify_on_load`)
    patterns = [f"{subfolder.strip('/')}/**", constants.PROVENANCE_FILE] if subfolder else None
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
