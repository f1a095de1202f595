"""Push a built bundle: one commit per repo, then its tag, then a sha256 check of what the Hub holds.

The bundle's own ``provenance.json`` is the reference: the local files must still match it before
anything is sent, and the remote files must match it afterwards. The token is passed to
``huggingface_hub`` and nowhere else; error messages are scrubbed of it in case a server echoes it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from hubkit import constants, hub
from hubkit.hub.publishing import hub_api, remote_differences
from hubkit.hub.redaction import protect, redact
from hubkit.provenance import sha256_files
from hubkit.release.errors import PushError, ReleaseError
from hubkit.release.provenance import Bundle, RepoTarget, provenance_files

log = logging.getLogger(__name__)


@dataclass
class PushedRepo:
    """The outcome for one repo of a release."""

    target: RepoTarget
    result: hub.PushResult
    verified: bool


def scrub(text: str, token: str | None) -> str:
    """`text` with `token` and anything credential-looking replaced (tokens never reach messages or logs)."""
    protect(token)
    return redact(text)


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "kB", "MB"):
        if size < 1000:
            return f"{n} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"


def local_files(bundle: Bundle, target: RepoTarget) -> dict[str, str]:
    """``{path: sha256}`` of a repo folder, refused when it no longer matches its provenance.json."""
    folder = bundle.folder(target)
    if not folder.is_dir():
        raise ReleaseError(f"{folder}: the bundle folder for {target.repo_id} is missing; rebuild the bundle")
    recorded = provenance_files(folder)
    actual = sha256_files(folder)
    prov = actual.pop(constants.PROVENANCE_FILE)
    if actual != recorded:
        changed = sorted(p for p in set(actual) | set(recorded) if actual.get(p) != recorded.get(p))
        raise ReleaseError(
            f"{folder}: files differ from its {constants.PROVENANCE_FILE} ({changed[:5]}); the bundle was edited after it was "
            "built. Rebuild it with `hubkit release NAME`"
        )
    return {**actual, constants.PROVENANCE_FILE: prov}


def plan_text(bundle: Bundle) -> str:
    """What a push would send: repos, files with sizes, tags. Reads only the bundle folder."""
    lines = [f"dry run: nothing is sent. Release {bundle.name} ({bundle.kind}), tag {bundle.tag}"]
    for target in bundle.targets:
        files = local_files(bundle, target)
        folder = bundle.folder(target)
        sizes = {p: (folder / p).stat().st_size for p in files}
        lines.append(
            f"{target.repo_type} repo {target.repo_id}  tag {target.tag}  {len(files)} files, "
            f"{_human(sum(sizes.values()))}{'  (private)' if target.private else ''}"
        )
        width = max(len(p) for p in files)
        lines += [f"    {p:<{width}}  {_human(sizes[p]):>9}" for p in sorted(files)]
    return "\n".join(lines)


def push_bundle(
    bundle: Bundle | str | Path,
    *,
    endpoint: str | None = None,
    token: str | None = None,
    verify: bool = True,
) -> list[PushedRepo]:
    """Push every repo of `bundle` (one commit each, then the tag) and check remote sha256s against provenance.

    Re-running after a failure completes the release: repos already pushed are unchanged (no commit),
    LFS objects already stored are not sent again.
    """
    from huggingface_hub import constants as hf_constants

    b = bundle if isinstance(bundle, Bundle) else Bundle.load(bundle)
    if hf_constants.is_offline_mode():
        raise PushError(
            "HF_HUB_OFFLINE is set, so huggingface_hub refuses every request; unset it to push "
            "(or use --dry-run to see what would be sent)"
        )
    pushed = []
    for target in b.targets:
        files = local_files(b, target)
        folder = b.folder(target)
        before = _remote_head(target, endpoint, token)
        try:
            result = hub.push_folder(
                folder,
                target.repo_id,
                repo_type=target.repo_type,
                tag=target.tag,
                tag_message=f"hubkit release {b.name} {target.tag}",
                commit_message=f"hubkit release {b.name} ({target.tag})",
                endpoint=endpoint,
                token=token,
                private=target.private,
                sha256s=files,
            )
            log.info("%s", _describe(result))
            if verify:
                verify_remote(target, result.commit, folder, files, endpoint, token)
        except PushError:
            raise
        except Exception as exc:  # huggingface_hub errors, network errors, a moved tag
            raise PushError(
                f"pushing {folder} to {target.repo_id} failed: {type(exc).__name__}: {scrub(str(exc), token)}. "
                f"{_remote_now(target, before, endpoint, token)}"
            ) from None
        pushed.append(PushedRepo(target, result, verified=verify))
    return pushed


def _remote_head(target: RepoTarget, endpoint, token) -> str | None:
    """The commit `target`'s main branch points at now; None when the repo does not exist or cannot be read."""
    try:
        info = hub_api(endpoint, token).repo_info(target.repo_id, repo_type=target.repo_type, revision="main")
    except Exception:  # the push's own error is the one to report; this is only a description
        return None
    return info.sha


def _remote_now(target: RepoTarget, before: str | None, endpoint, token) -> str:
    """What the remote holds after a failed push, read back from it rather than assumed."""
    now = _remote_head(target, endpoint, token)
    again = "run the same command again to complete the release"
    if now is None:
        return f"The state of {target.repo_id} could not be read back; check it on the Hub, then {again}"
    if now == before:
        return f"{target.repo_id} main is still at its previous commit {now[:12]}; {again}"
    was = f"was {before[:12]}" if before else "the repo is new"
    return (
        f"{target.repo_id} main is now at commit {now[:12]} ({was}): this release's files are committed "
        "there but the release did not finish; fix the cause above, then run the command again"
    )


def verify_remote(
    target: RepoTarget, commit: str, folder: Path, files: dict[str, str], endpoint, token
) -> bool:
    """The repo at `commit` holds exactly the bundle's files, each with the sha256 provenance.json records.

    LFS files are compared by the sha256 the Hub reports. For regular files the Hub reports only the
    git blob id: it is compared with the blob id of the local file, whose sha256 `local_files` has
    just checked against provenance.json, so equal ids mean equal sha256 (without downloading them;
    `hubkit.hub.remote_sha256s` downloads and hashes them when that is wanted).
    """
    bad = remote_differences(
        hub_api(endpoint, token), target.repo_id, target.repo_type, commit, folder, files
    )
    if bad:
        raise PushError(
            f"{target.repo_id}@{commit[:12]}: remote files differ from {folder / constants.PROVENANCE_FILE}: "
            + "; ".join(bad[:5])
        )
    return True


def _describe(r: hub.PushResult) -> str:
    what = f"commit {r.commit[:12]}" if r.created_commit else f"unchanged at {r.commit[:12]} (no new commit)"
    return (
        f"{r.repo_id}: {what}; {len(r.uploaded)} file(s) uploaded, {len(r.deleted)} deleted, "
        f"{len(r.unchanged)} unchanged; tag {r.tag} "
        f"{'created' if r.tag_created else 'already there'}"
    )


def summary_text(pushed: list[PushedRepo]) -> str:
    return "\n".join(
        f"{_describe(p.result)}; remote sha256 {'verified' if p.verified else 'not checked'}" for p in pushed
    )
