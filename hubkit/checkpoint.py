"""Writing NLA checkpoints (a temp folder renamed into place), and checking that a folder still holds
what was written: ``.hubkit_sha256.json`` records each file's sha256 and size, so a flipped byte or a
missing file is an error naming it instead of weights that load silently wrong.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from hubkit import constants as C
from hubkit.errors import CheckpointError
from hubkit.provenance import sha256_file, sha256_files

if TYPE_CHECKING:
    from torch import nn

    from hubkit.meta import NLAMeta

HASHES_FORMAT = "hubkit.checkpoint_sha256/1"
log = logging.getLogger(__name__)


def write_file_hashes(folder: str | Path) -> Path:
    """Record the sha256 and size of every non-hidden file under `folder` in its hash file."""
    folder = Path(folder)
    hashes = {rel: h for rel, h in sha256_files(folder).items() if not Path(rel).name.startswith(".")}
    files = {rel: {"sha256": h, "size": (folder / rel).stat().st_size} for rel, h in hashes.items()}
    path = folder / C.CHECKPOINT_HASHES_FILE
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"format": HASHES_FORMAT, "files": files}, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)
    return path


def read_file_hashes(folder: str | Path) -> dict[str, dict] | None:
    """``{relative path: {sha256, size}}`` recorded for `folder`, or None when it has no hash file."""
    path = Path(folder) / C.CHECKPOINT_HASHES_FILE
    if not path.is_file():
        return None
    try:
        body = json.loads(path.read_text())
        files = body["files"]
        if body.get("format") != HASHES_FORMAT or not isinstance(files, dict):
            raise ValueError(f"format {body.get('format')!r}")
        return {str(k): {"sha256": str(v["sha256"]), "size": int(v["size"])} for k, v in files.items()}
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise CheckpointError(
            f"{path}: unreadable checkpoint hash file ({exc}); the folder cannot be verified. "
            "Restore it from a copy, or delete the hash file to accept the folder unverified"
        ) from exc


def check_files(folder: Path, files: dict[str, dict], source: str, skip: tuple[str, ...] = ()) -> None:
    """Each recorded file present with its size and sha256; the first that is not is a `CheckpointError`."""
    for rel, want in sorted((k, v) for k, v in files.items() if k not in skip):
        path = folder / rel
        if not path.is_file():
            raise CheckpointError(
                f"{path}: missing from the checkpoint (recorded in {source}); "
                "the folder is incomplete: restore the file or use another checkpoint"
            )
        size = path.stat().st_size
        if want.get("size") is not None and size != want["size"]:
            raise CheckpointError(
                f"{path}: {size} bytes but {want['size']} were written; the file is truncated or replaced: "
                "restore it or use another checkpoint"
            )
        if sha256_file(path) != want["sha256"]:
            raise CheckpointError(
                f"{path}: sha256 differs from the one recorded in {source}; the file is corrupt "
                "or was changed: restore it or use another checkpoint"
            )


def verify_checkpoint(folder: str | Path, *, required: bool = False, skip: tuple[str, ...] = ()) -> bool:
    """Check every file `folder`'s hash file lists; False when there is none (and not `required`)."""
    folder = Path(folder)
    files = read_file_hashes(folder)
    if files is None and required:
        raise CheckpointError(f"{folder}: no {C.CHECKPOINT_HASHES_FILE}; the checkpoint cannot be verified")
    if files is None:
        return False
    check_files(folder, files, C.CHECKPOINT_HASHES_FILE, skip)
    return True


NO_VERIFY_ENV = "HUBKIT_NO_VERIFY"  # set to 1 to skip hashing very large checkpoints on load
# Checked on load by their own readers instead: the meta by its schema (a user may point `base_model` at a
# local copy), the card is prose.
EDITABLE_FILES = (C.META_FILE, "README.md")
_warned: set[str] = set()


def _provenance_hashes(folder: Path) -> dict[str, str] | None:
    """``{path: sha256}`` a release's provenance.json records for `folder` (or its parent's); None without."""
    prefix = ""
    path = folder / C.PROVENANCE_FILE
    if not path.is_file():
        prefix, path = f"{folder.name}/", folder.parent / C.PROVENANCE_FILE
        if not path.is_file():
            return None
    try:
        files = json.loads(path.read_text(encoding="utf-8"))["files"]
        return {
            str(k)[len(prefix) :]: str(v["sha256"]) for k, v in files.items() if str(k).startswith(prefix)
        } or None
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise CheckpointError(
            f"{path}: unreadable ({type(exc).__name__}: {exc}); the folder cannot be verified. Restore it, "
            f"or set {NO_VERIFY_ENV}=1 to load unverified"
        ) from exc


def verify_on_load(folder: str | Path, verify: bool = True) -> bool:
    """Check a checkpoint's files against its hash file, else a release's provenance.json; True when
    verified. `verify` False or ``HUBKIT_NO_VERIFY=1`` skips it (checkpoints too large to hash)."""
    folder = Path(folder)
    if not verify or os.environ.get(NO_VERIFY_ENV, "") not in ("", "0"):
        return False
    if verify_checkpoint(folder, skip=EDITABLE_FILES):
        return True
    recorded = _provenance_hashes(folder)
    if recorded is not None:
        files = {k: {"sha256": v} for k, v in recorded.items()}
        check_files(folder, files, C.PROVENANCE_FILE, EDITABLE_FILES)
        return True
    key = str(folder.resolve())
    if key not in _warned and _hubkit_written(folder):
        _warned.add(key)
        log.warning(
            "%s: no %s, so its weights are loaded unverified (a checkpoint hubkit wrote carries one)",
            folder,
            C.CHECKPOINT_HASHES_FILE,
        )
    return False


def _hubkit_written(folder: Path) -> bool:
    """Whether the folder's nla_meta.yaml carries hubkit's own record (a top-level ``hubkit:`` key)."""
    try:
        text = (folder / C.META_FILE).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    return any(line.startswith("hubkit:") for line in text.splitlines())


def _save_weights(
    model: nn.Module, tokenizer, folder: Path, adapter_name: str | None, state_dict: dict | None = None
) -> None:
    """`state_dict` (a sharded model's weights gathered by the trainer) replaces the model's own tensors."""
    from peft import PeftModel

    given = {} if state_dict is None else {"state_dict": state_dict}
    if isinstance(model, PeftModel):
        model.save_pretrained(str(folder), selected_adapters=adapter_name and [adapter_name], **given)
        if adapter_name and adapter_name != "default" and (folder / adapter_name).is_dir():
            # peft nests non-default adapters in a subfolder; keep the files at the top level.
            for f in (folder / adapter_name).iterdir():
                f.replace(folder / f.name)
            (folder / adapter_name).rmdir()
    else:
        model.save_pretrained(str(folder), **given)
    if tokenizer is not None:
        tokenizer.save_pretrained(str(folder))


def write_checkpoint(
    folder: str | Path,
    model: nn.Module,
    tokenizer,
    meta: NLAMeta,
    head: nn.Linear | None = None,
    adapter_name: str | None = None,
    legacy_pt: bool = False,
    state_dict: dict | None = None,
) -> Path:
    """Write one checkpoint folder atomically with its file hashes; `state_dict` replaces the model's own."""
    from hubkit import heads  # lazy: heads imports torch; the CLI and release bundles read hashes without it

    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        _save_weights(model, tokenizer, tmp, adapter_name, state_dict)
        if head is not None:
            heads.save_head(head, tmp)
            if legacy_pt:
                heads.save_legacy_pt(head, tmp)
        meta.save(tmp / C.META_FILE)
        write_file_hashes(tmp)
        replace_dir(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def replace_dir(tmp: Path, target: Path) -> None:
    """Put folder `tmp` in the place of `target` with renames only, so a reader never sees a half-written folder."""
    old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
    if target.exists():
        os.replace(target, old)
    os.replace(tmp, target)
    shutil.rmtree(old, ignore_errors=True)
