"""What the evaluated checkpoints say they were trained on: ``training.stage`` and ``training.data_sha256``
of their metas, and the table the run's recipe copy names (found unchanged), following a GRPO run's
``av_init``/``ar_init`` back to its SFT checkpoints."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from hubkit import constants
from hubkit.constants import RECIPE_COPY as RUN_RECIPE_FILE
from hubkit.meta import NLAMeta
from hubkit.provenance import sha256_file

log = logging.getLogger(__name__)

STAGE_SECTIONS = {"av_sft": "av", "ar_sft": "ar", "grpo": "grpo"}  # training.stage → recipe section
MAX_DEPTH = 3  # GRPO → SFT → (nothing further in hubkit's pipeline)


@dataclass(frozen=True)
class TrainedOn:
    """One training table a checkpoint names: its sha256, and its path when found unchanged."""

    checkpoint: str  # "av", "ar", "av < step_000100" (a GRPO run's starting checkpoint), …
    stage: str | None
    data_sha256: str | None
    data_path: str | None = None


def _has_meta(folder: Path) -> bool:
    return (folder / constants.META_FILE).is_file() or (folder / constants.AR_META_JSON).is_file()


def _recipe(folder: Path) -> tuple[dict, Path] | None:
    """The run's recipe copy (in the checkpoint's run folder, or the one above a GRPO ``ar/`` subfolder)."""
    import yaml

    for run in (folder.parent, folder.parent.parent):
        path = run / RUN_RECIPE_FILE
        if path.is_file():
            try:
                data = yaml.safe_load(path.read_text())
            except (OSError, yaml.YAMLError) as exc:
                log.warning(
                    "%s: unreadable recipe copy (%s); training data compared by sha256 only", path, exc
                )
                return None
            return (data, path) if isinstance(data, dict) else None
    return None


def _find(raw: str | None, recipe_path: Path) -> list[Path]:
    if not raw:
        return []
    p = Path(raw)
    if p.is_absolute():
        return [p]
    run = recipe_path.parent
    return [Path.cwd() / p, run / p, run.parent / p, run.parent.parent / p]


def _latest_step(folder: Path) -> Path | None:
    steps = sorted(p for p in folder.glob("step_*") if p.is_dir() and _has_meta(p))
    return steps[-1] if steps else None


def _inits(recipe: dict, recipe_path: Path) -> list[Path]:
    """The AV and AR a GRPO run started from (explicit ``av_init``/``ar_init``, else the last SFT steps)."""
    section = recipe.get("grpo") if isinstance(recipe.get("grpo"), dict) else {}
    out = []
    for key, sub in (("av_init", "av"), ("ar_init", "ar")):
        found = next((c for c in _find(section.get(key), recipe_path) if _has_meta(c)), None)
        if found is None and section.get(key) is None and recipe.get("output_dir"):
            for root in _find(str(recipe["output_dir"]), recipe_path):
                if (root / sub).is_dir() and (found := _latest_step(root / sub)) is not None:
                    break
        if found is not None:
            out.append(found)
    return out


def _table_path(meta: NLAMeta, recipe: tuple[dict, Path] | None) -> str | None:
    """The recipe's training table for this stage, when it is still there with the recorded sha256."""
    t = meta.training
    if recipe is None or t.stage not in STAGE_SECTIONS or not t.data_sha256:
        return None
    data, path = recipe
    section = data.get(STAGE_SECTIONS[t.stage])
    raw = section.get("data") if isinstance(section, dict) else None
    for cand in _find(raw, path):
        if cand.is_file():
            if sha256_file(cand) == t.data_sha256:
                return str(cand)
            log.warning("%s: the training table changed since training (sha256 differs from the meta)", cand)
    return None


def from_halves(halves: Mapping[str, object]) -> list[TrainedOn]:
    """Training tables named by each half's meta (a loaded half with ``.meta``, or a checkpoint folder, whose
    run's recipe and GRPO inits are followed too)."""
    out: list[TrainedOn] = []
    seen: set[str] = set()

    def visit(label: str, meta: NLAMeta, folder: Path | None, depth: int) -> None:
        recipe = _recipe(folder) if folder is not None else None
        t = meta.training
        if t.data_sha256 or t.stage:
            out.append(TrainedOn(label, t.stage, t.data_sha256, _table_path(meta, recipe)))
        if recipe is None or t.stage != "grpo" or depth >= MAX_DEPTH:
            return
        for init in _inits(*recipe):
            key = str(init.resolve())
            if key not in seen:
                seen.add(key)
                visit(f"{label} < {init.name}", NLAMeta.load(init), init, depth + 1)

    for name, half in halves.items():
        folder = None if hasattr(half, "meta") else Path(half)
        visit(name, NLAMeta.load(folder) if folder else half.meta, folder, 0)
    return out


def record_folders(checkpoints: Mapping[str, object] | None) -> dict[str, Path]:
    """Checkpoint folders from an eval's ``checkpoints`` argument (folders, or records with a ``path``)."""
    out = {}
    for name, rec in (checkpoints or {}).items():
        path = rec.get("path") if isinstance(rec, dict) else rec
        if path is not None and Path(path).is_dir():
            out[name] = Path(path)
    return out


def merge(records: Iterable[TrainedOn]) -> list[TrainedOn]:
    """One record per (sha256, path, stage), in order (a trajectory's checkpoints mostly name one table)."""
    out: dict[tuple, TrainedOn] = {}
    for r in records:
        out.setdefault((r.data_sha256, r.data_path, r.stage), r)
    return list(out.values())
