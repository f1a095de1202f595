"""Planning a checkpoint folder for a bundle: what is copied, converted, skipped or refused; then writing it.

Trainer state stays home, a legacy ``linear_head.pt`` is converted to safetensors (read with
``weights_only=True``), any other pickle is refused, and ``nla_meta.yaml`` is rewritten in hubkit's
schema (with a retraction when the spec marks the checkpoint retracted).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path

from hubkit import constants, heads
from hubkit.meta import NLAMeta, Retraction
from hubkit.provenance import sha256_file
from hubkit.release.errors import ReleaseError
from hubkit.release.public import PublicNames, public_meta, publish_files
from hubkit.release.spec import LoadedSpec

# Files a training run leaves in a checkpoint folder that a release does not publish.
TRAINER_FILES = frozenset(
    "trainer_state.json trainer_state.safetensors training_args.bin optimizer.pt scheduler.pt scaler.pt "
    "rng_state.pth".split()
)
# Files the bundle writes itself (replacing any the checkpoint has); the meta is rewritten from its own.
GENERATED = frozenset({constants.CARD_FILE, constants.PROVENANCE_FILE, constants.EVAL_FILE})
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


@dataclass
class PlannedCheckpoint:
    """A checkpoint folder planned for the bundle: what is copied, converted and checked."""

    source: Path
    meta: NLAMeta
    meta_file: Path
    copy: list[str] = field(default_factory=list)
    legacy_head: str | None = None  # a linear_head.pt converted to safetensors
    skipped: list[str] = field(default_factory=list)
    rewritten: set[str] = field(default_factory=set)  # copied files whose local paths were replaced

    @property
    def meta_rel(self) -> str:
        return self.meta_file.relative_to(self.source).as_posix()

    def shipped_sources(self) -> dict[str, str]:
        """sha256 of every source file whose content reaches the bundle (copied, converted, or the meta rewritten)."""
        rels = [*self.copy, *([self.legacy_head] if self.legacy_head else [])]
        if self.meta_file.exists():
            rels.append(self.meta_rel)
        return {rel: sha256_file(self.source / rel) for rel in rels}

    def weight_files(self) -> list[dict]:
        """``[{path, sha256}]`` of the shipped sources other than the meta (the card's file table)."""
        return [
            {"path": rel, "sha256": sha}
            for rel, sha in sorted(self.shipped_sources().items())
            if rel != self.meta_rel
        ]

    def copied_sources(self, prefix: str = "") -> dict[str, dict]:
        """Provenance records of the files copied as they are."""
        return {
            f"{prefix}{rel}": {"from": str(self.source / rel), "sha256": sha, "how": "copy"}
            for rel, sha in self.shipped_sources().items()
            if rel in self.copy and rel not in self.rewritten
        }


def plan_half(source: Path, role: str | None, field_name: str, spec_path: Path) -> PlannedCheckpoint:
    """Read a checkpoint folder: its meta, and which of its files the bundle copies or converts."""
    meta = NLAMeta.load(source)
    if role is not None and meta.role != role:
        raise ReleaseError(
            f"{spec_path}: field `{field_name}`: {source} is an {meta.role.upper()} checkpoint, not an "
            f"{role.upper()}"
        )
    meta_file = source / constants.META_FILE
    if not meta_file.exists():
        meta_file = source / constants.AR_META_JSON
    half = PlannedCheckpoint(source, meta, meta_file)
    # a checkpoint inside the checkpoint (a GRPO step's co-trained AR in ar/): part of a trajectory's
    # step, never of an AV or AR release of its own (that half is released from its own folder)
    nested = [m.parent for m in source.rglob(constants.META_FILE) if m.parent != source]
    for p in sorted(source.rglob("*")):
        rel = p.relative_to(source).as_posix()
        if not p.is_file() or any(part.startswith(".") for part in p.relative_to(source).parts):
            continue
        if field_name != "trajectory" and any(p.is_relative_to(n) for n in nested):
            half.skipped.append(rel)
            continue
        name = p.name
        if name in TRAINER_FILES or name == constants.CARD_FILE or rel in GENERATED:
            half.skipped.append(rel)
        elif rel == constants.META_FILE:
            continue
        elif name == constants.LINEAR_HEAD_PT_FILE:
            if (p.parent / constants.VALUE_HEAD_FILE).exists():
                half.skipped.append(rel)  # the safetensors head is the same head; the pickle is not shipped
            else:
                half.legacy_head = rel
        elif name.endswith(PICKLE_SUFFIXES):
            raise ReleaseError(
                f"{p}: a pickle file; hubkit publishes safetensors only (a pickle can run code when loaded). "
                "Convert it to safetensors or move it out of the checkpoint folder"
            )
        else:
            half.copy.append(rel)
    return half


def write_half(
    half: PlannedCheckpoint, dest: Path, legacy_pt: bool, retraction: str | None, names: PublicNames
) -> dict[str, dict]:
    """Copy/convert a planned checkpoint into `dest`; returns ``{bundle path: {from, sha256, how}}``.
    The meta and the copied files that record local paths say the public `names` instead."""
    dest.mkdir(parents=True, exist_ok=True)
    sources: dict[str, dict] = {}
    for rel in half.copy:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(half.source / rel, dest / rel)
    meta = half.meta
    if half.legacy_head is not None:
        out, has_bias = heads.convert_pt_head(
            half.source / half.legacy_head, (dest / half.legacy_head).parent
        )
        sources[out.relative_to(dest).as_posix()] = {
            "from": str(half.source / half.legacy_head),
            "how": "linear_head.pt read with weights_only=True, written as safetensors",
        }
        assert meta.ar is not None
        meta = meta.with_updates(ar=replace(meta.ar, head_format="value_head", head_bias=has_bias))
    if legacy_pt and meta.role == "ar":
        assert meta.ar is not None
        heads.write_legacy_pt_from(dest, meta.ar.head_format, meta.d_model, meta.ar.head_bias)
        sources[constants.LINEAR_HEAD_PT_FILE] = {
            "from": f"{constants.VALUE_HEAD_FILE} (bundle)",
            "how": "legacy linear_head.pt (tensors only) written on request (--legacy-pt)",
        }
    if retraction is not None:
        meta = meta.with_updates(retracted=Retraction(reason=retraction))
    meta = public_meta(meta, names)
    for rel, rec in publish_files(dest, names).items():
        half.rewritten.add(rel)
        sources[rel] = {"from": str(half.source / rel), **rec}
    # a GRPO step's own AR (ar/) names its base too
    for nested in sorted(m for m in dest.rglob(constants.META_FILE) if m.parent != dest):
        rel = nested.relative_to(dest).as_posix()
        public_meta(NLAMeta.load(nested.parent), names).save(nested)
        half.rewritten.add(rel)
        sources[rel] = {"from": str(half.source / rel), "how": "rewritten with public names"}
    meta.save(dest / constants.META_FILE)
    sources[constants.META_FILE] = {
        "from": str(half.meta_file),
        "how": f"rewritten in {constants.SCHEMA_VERSION}" + (" with the retraction" if retraction else ""),
    }
    return sources


def check_corrections(ls: LoadedSpec, names: list[str]) -> None:
    """Every correction must name a checkpoint this release publishes."""
    for i, c in enumerate(ls.spec.corrections):
        if c.checkpoint not in names:
            raise ReleaseError(
                f"{ls.path}: field `corrections[{i}].checkpoint` {c.checkpoint!r} is not a checkpoint "
                f"of this release; choose one of {names}"
            )
