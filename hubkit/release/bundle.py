"""Build a release bundle: one folder per target repo, exactly what will be pushed, plus a manifest.

``hubkit release NAME --out DIR`` writes::

    DIR/release.json            manifest: repos, repo types, folders, tag (not pushed)
    DIR/av/ ...                 one folder per repo: weights or adapter, tokenizer, nla_meta.yaml,
    DIR/ar/ ...                 value_head.safetensors, eval.json, plots/*.png, README.md, provenance.json,
                                and the legal files of the base family (LICENSE, NOTICE, ...)
    DIR/trajectory/step_*/ ...  (a trajectory: one subfolder per checkpoint)
    DIR/dataset/data/ ...       (a dataset: parquet tables and their sidecars)

The bundle is refused (nothing written) when an honesty check fails. It is deterministic: the same
inputs give the same bytes, so pushing a rebuilt, unchanged release uploads nothing.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

from hubkit import constants
from hubkit.checkpoint import read_file_hashes, write_file_hashes
from hubkit.errors import CheckpointError
from hubkit.provenance import sha256_file
from hubkit.release.build_dataset import build_dataset
from hubkit.release.build_pair import build_pair
from hubkit.release.build_trajectory import build_trajectory
from hubkit.release.errors import ReleaseError
from hubkit.release.provenance import Bundle, RepoTarget
from hubkit.release.public import find_local_paths
from hubkit.release.spec import LoadedSpec, load_spec

log = logging.getLogger(__name__)


def _build(ls: LoadedSpec, out: Path, cards_dir: Path | None, legacy_pt: bool) -> list[RepoTarget]:
    if ls.spec.kind in ("av", "ar", "pair"):
        return build_pair(ls, out, cards_dir, legacy_pt)
    if ls.spec.kind == "trajectory":
        return build_trajectory(ls, out, cards_dir, legacy_pt)
    return build_dataset(ls, out, cards_dir)


def check_replaceable(out: Path) -> None:
    """Refuse to replace `out` unless it is missing, empty, or holds only files hubkit wrote there.

    A bundle records the sha256 of each of its files in its hash file (`constants.CHECKPOINT_HASHES_FILE`, not
    pushed); a file it does not list, or one whose bytes changed since, is the user's and is never
    deleted (the rule `extract` and `build` follow for their tables).
    """
    if not out.exists():
        return
    if not out.is_dir():
        raise ReleaseError(f"--out {out}: a file, not a folder; choose another --out folder")
    files = sorted(p for p in out.rglob("*") if not p.is_dir())
    if not files:
        return
    try:
        recorded = read_file_hashes(out)
    except CheckpointError as exc:
        raise ReleaseError(f"--out {out}: {exc}") from exc
    if recorded is None:
        raise ReleaseError(
            f"--out {out}: not a release bundle hubkit built (no {constants.CHECKPOINT_HASHES_FILE} recording its files, "
            f"e.g. {files[0].relative_to(out)}); nothing was replaced: choose an empty or new --out folder"
        )
    for path in files:
        rel = path.relative_to(out).as_posix()
        if rel == constants.CHECKPOINT_HASHES_FILE:
            continue
        want = recorded.get(rel)
        if want is None or path.is_symlink() or path.stat().st_size != want["size"]:
            why = "not written by hubkit" if want is None else "changed since hubkit wrote it"
            raise ReleaseError(
                f"--out {out}: {rel} is {why}; nothing was replaced: move it away or choose another --out folder"
            )
        if sha256_file(path) != want["sha256"]:
            raise ReleaseError(
                f"--out {out}: {rel} is changed since hubkit wrote it; nothing was replaced: move it away "
                "or choose another --out folder"
            )


def _refuse_local_paths(root: Path) -> None:
    """No published file may name a folder of this machine (`hubkit.release.local_paths`)."""
    found = find_local_paths(root)
    if found:
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        raise ReleaseError(
            f"{found[0]}{more}; a release publishes no path of the machine that built it: remove the "
            "value from that file in the checkpoint, or write a Hub id, a release name or a hash in its place"
        )


def build_bundle(
    spec: LoadedSpec | str | Path,
    out: str | Path,
    cards_dir: str | Path | None = None,
    legacy_pt: bool = False,
) -> Bundle:
    """Check and build the bundle of a release into `out` (replaced whole; written atomically).

    Every honesty check runs before anything is moved into `out`: a refused release leaves `out` as it was,
    and so does an `out` holding a file hubkit did not write there (`check_replaceable`).
    """
    ls = spec if isinstance(spec, LoadedSpec) else load_spec(spec)
    out = Path(out)
    check_replaceable(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    cdir = Path(cards_dir) if cards_dir is not None else None
    try:
        targets = _build(ls, tmp, cdir, legacy_pt)
        _refuse_local_paths(tmp)
        bundle = Bundle(
            root=tmp, name=ls.name, kind=ls.spec.kind, tag=ls.spec.tag, targets=targets, spec_sha256=ls.sha256
        )
        bundle.save()
        write_file_hashes(tmp)
        if out.exists():
            old = out.with_name(f".{out.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    bundle.root = out
    log.info("release %s: bundle written to %s (%d repo(s))", ls.name, out, len(targets))
    return bundle
