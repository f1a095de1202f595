"""Trajectory checkpoints: ``step_000050/`` folders written atomically, and exact resume from them.

Each step folder is a loadable checkpoint plus ``trainer_state.json`` (counters, hashes, optimiser and
scheduler structure) and ``trainer_state.safetensors`` (optimiser tensors). It is built under a hidden
``.step_000050.partial-*`` name and renamed into place, so a killed run leaves a complete checkpoint or
nothing.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from peft import PeftModel, set_peft_model_state_dict
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from hubkit import constants as C
from hubkit.checkpoint import verify_checkpoint, write_checkpoint, write_file_hashes
from hubkit.errors import CheckpointError, first_line
from hubkit.meta import NLAMeta
from hubkit.train import fsdp

log = logging.getLogger(__name__)

TRAINER_STATE_JSON = "trainer_state.json"
TRAINER_STATE_TENSORS = "trainer_state.safetensors"
STEP_RE = re.compile(r"^step_(\d{6,})$")
MODEL_WEIGHTS = "model.safetensors"
MODEL_WEIGHTS_INDEX = "model.safetensors.index.json"


def step_name(step: int) -> str:
    return f"step_{step:06d}"


def kept(last: Path | None) -> str:
    """Where a stopped run can resume from, as the error messages say it."""
    return f"the last good checkpoint is {last}" if last is not None else "no checkpoint was written yet"


@dataclass
class Part:
    """One checkpoint inside a step folder (`subdir` "" is the folder itself)."""

    model: nn.Module
    tokenizer: Any
    meta: NLAMeta
    head: nn.Linear | None = None
    adapter_name: str | None = None
    subdir: str = ""
    state_dict: dict[str, Tensor] | None = None  # full weights gathered from a sharded model (rank 0)


@dataclass
class TrainerState:
    """Where a run stands after `step` optimiser steps; everything resume checks or restores."""

    stage: str
    step: int
    total_steps: int
    loss: float
    lr: float
    tokens_seen: int
    seed: int
    data_sha256: str
    config_sha256: str
    parent: str | None
    global_batch: int
    world_size: int
    extra: dict[str, Any] = field(default_factory=dict)


# -- nested state ⇄ (json, tensors) ------------------------------------------------------------------
def _pack(obj: Any, tensors: dict[str, Tensor]) -> Any:
    if isinstance(obj, Tensor):
        name = f"t{len(tensors):06d}"
        tensors[name] = obj.detach().contiguous().cpu()
        return {"__tensor__": name}
    if isinstance(obj, dict):
        return {"__dict__": [[k, _pack(v, tensors)] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [_pack(v, tensors) for v in obj]}
    if isinstance(obj, list):
        return [_pack(v, tensors) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise CheckpointError(f"cannot store a {type(obj).__name__} in the trainer state")


def _unpack(obj: Any, tensors: dict[str, Tensor]) -> Any:
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__dict__" in obj:
            return {k: _unpack(v, tensors) for k, v in obj["__dict__"]}
        if "__tuple__" in obj:
            return tuple(_unpack(v, tensors) for v in obj["__tuple__"])
    if isinstance(obj, list):
        return [_unpack(v, tensors) for v in obj]
    return obj


# -- writing -------------------------------------------------------------------------------------------
def clean_partials(run_dir: Path) -> list[Path]:
    """Remove half-written ``.step_*`` folders a killed run left behind; returns what was removed."""
    removed = []
    if run_dir.is_dir():
        for p in run_dir.iterdir():
            if p.name.startswith(".step_"):
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
                removed.append(p)
    return removed


def write_step(
    run_dir: Path,
    state: TrainerState,
    parts: list[Part],
    optimizers: dict[str, torch.optim.Optimizer | dict],
    schedulers: dict[str, Any],
) -> Path:
    """Write ``run_dir/step_XXXXXX`` atomically: checkpoint part(s) and trainer state, then one rename.

    An optimiser may be given as its state dict already (gathered from shards by every rank)."""
    final = run_dir / step_name(state.step)
    if final.exists():
        raise CheckpointError(
            f"{final} already exists; a run writes each step once (was it resumed from an older step?)"
        )
    staging = run_dir / f".{final.name}.partial-{uuid.uuid4().hex[:8]}"
    try:
        for part in parts:
            write_checkpoint(
                staging / part.subdir if part.subdir else staging,
                part.model,
                part.tokenizer,
                part.meta,
                head=part.head,
                adapter_name=part.adapter_name,
                state_dict=part.state_dict,
            )
        staging.mkdir(exist_ok=True)
        tensors: dict[str, Tensor] = {}
        packed = {
            "optimizers": {
                k: _pack(o if isinstance(o, dict) else o.state_dict(), tensors) for k, o in optimizers.items()
            },
            "schedulers": {k: _pack(s.state_dict(), tensors) for k, s in schedulers.items()},
        }
        save_file(tensors, str(staging / TRAINER_STATE_TENSORS))
        body = {"format": "hubkit.trainer_state/1", **asdict(state), **packed}
        (staging / TRAINER_STATE_JSON).write_text(json.dumps(body, indent=1, allow_nan=True) + "\n")
        write_file_hashes(staging)  # every file of the step, the parts' and the trainer state's
        os.replace(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final


# -- reading -------------------------------------------------------------------------------------------
def list_steps(run_dir: Path) -> list[tuple[int, Path]]:
    """Complete step folders of a run, oldest first."""
    if not run_dir.is_dir():
        return []
    found = []
    for p in run_dir.iterdir():
        m = STEP_RE.match(p.name)
        if m and p.is_dir() and (p / TRAINER_STATE_JSON).is_file():
            found.append((int(m.group(1)), p))
    return sorted(found)


def latest_step(run_dir: Path) -> Path | None:
    steps = list_steps(run_dir)
    return steps[-1][1] if steps else None


@dataclass
class Resumed:
    folder: Path
    state: TrainerState
    optimizers: dict[str, dict]
    schedulers: dict[str, dict]


def _load_tensors(path: Path, finite: bool = True) -> dict[str, Tensor]:
    """A safetensors file (every tensor finite when `finite`), or a one-line `CheckpointError` when it is
    missing, truncated or corrupt."""
    if not path.is_file():
        raise CheckpointError(f"{path}: missing; this checkpoint cannot be resumed from")
    try:
        tensors = load_file(str(path))
    except Exception as exc:  # safetensors raises its own error type, OSError or ValueError
        raise CheckpointError(
            f"{path}: not a readable safetensors file ({first_line(exc)}); the checkpoint is "
            "corrupt: use another step (--resume-fallback) or start a new run"
        ) from exc
    if not finite:
        return tensors
    bad = [k for k, t in tensors.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        raise CheckpointError(
            f"{path}: tensor(s) {bad[:3]} hold NaN or inf; the checkpoint is corrupt: use another step "
            "(--resume-fallback) or start a new run"
        )
    return tensors


def read_state(folder: Path, unverified_ok: bool = False) -> Resumed:
    """The resume state of a step folder, after checking its files against the hashes recorded when it
    was written; every problem is one `CheckpointError` naming the file. A folder without its hash file
    is refused unless `unverified_ok` (``--resume-unverified``)."""
    path = folder / TRAINER_STATE_JSON
    if not path.is_file():
        raise CheckpointError(f"{folder}: no {TRAINER_STATE_JSON}; this folder cannot be resumed from")
    if not verify_checkpoint(folder):
        if not unverified_ok:
            raise CheckpointError(
                f"{folder}: no {C.CHECKPOINT_HASHES_FILE}, so its files cannot be checked before resuming; "
                "pass --resume-unverified to resume from it anyway, or start a new run"
            )
        log.warning("%s: written without file hashes; resuming from it unverified", folder)
    try:
        body = json.loads(path.read_text())
        if not isinstance(body, dict):
            raise ValueError(f"expected a JSON object, got {type(body).__name__}")
    except (ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(
            f"{path}: not valid JSON ({str(exc)[:120]}); the file is truncated or corrupt: use another step "
            "(--resume-fallback) or start a new run"
        ) from exc
    tensors = _load_tensors(folder / TRAINER_STATE_TENSORS)
    names = set(TrainerState.__dataclass_fields__)
    try:
        state = TrainerState(**{k: v for k, v in body.items() if k in names})
        optimizers = {k: _unpack(v, tensors) for k, v in body["optimizers"].items()}
        schedulers = {k: _unpack(v, tensors) for k, v in body["schedulers"].items()}
        return Resumed(folder, state, optimizers, schedulers)
    except (TypeError, KeyError, AttributeError) as exc:
        raise CheckpointError(
            f"{path}: the trainer state lacks or mistypes a field ({exc}); use another step "
            "(--resume-fallback) or start a new run"
        ) from exc


def set_aside_damaged(run_dir: Path, unverified_ok: bool = False) -> Resumed | None:
    """``--resume-fallback``: rename damaged steps, newest first, to ``corrupt_step_…`` (kept for inspection)
    until the latest step left is intact (its state returned), or none is left (None)."""
    for _, folder in reversed(list_steps(run_dir)):
        try:
            return read_state(folder, unverified_ok)
        except CheckpointError as exc:
            moved = folder.with_name(f"corrupt_{folder.name}_{uuid.uuid4().hex[:6]}")
            os.replace(folder, moved)
            log.warning("skipping a damaged checkpoint (%s); moved it to %s", exc, moved.name)
    return None


def check_resumable(
    resumed: Resumed, stage: str, config_sha256: str, data_sha256: str, global_batch: int
) -> None:
    """Refuse to continue a run with another recipe, other data or another global batch: never mix."""
    s, where = resumed.state, resumed.folder
    problems = []
    if s.stage != stage:
        problems.append(f"it is a `{s.stage}` run, not `{stage}`")
    if s.config_sha256 != config_sha256:
        problems.append(
            f"the recipe differs (config sha256 {s.config_sha256[:12]}… there, {config_sha256[:12]}… now)"
        )
    if s.data_sha256 != data_sha256:
        problems.append(
            f"the training data differ (sha256 {s.data_sha256[:12]}… there, {data_sha256[:12]}… now)"
        )
    if s.global_batch != global_batch:
        problems.append(f"the global batch differs ({s.global_batch} there, {global_batch} now)")
    if problems:
        raise CheckpointError(
            f"refusing to resume from {where}: "
            + "; ".join(problems)
            + ". Resume with the same recipe and data, or start a new run in another output folder"
        )


def _saved_weights(folder: Path, adapter: bool) -> dict[str, Tensor]:
    """The trained tensors of a step folder: its adapter, or its full weights (one file or indexed shards)."""
    if adapter:
        path = folder / C.ADAPTER_WEIGHTS_FILE
        if not path.is_file():
            raise CheckpointError(f"{folder}: no {C.ADAPTER_WEIGHTS_FILE} to resume the adapter from")
        files = [path]
    elif (folder / MODEL_WEIGHTS).is_file():
        files = [folder / MODEL_WEIGHTS]
    elif (folder / MODEL_WEIGHTS_INDEX).is_file():
        index = json.loads((folder / MODEL_WEIGHTS_INDEX).read_text())
        files = [folder / shard for shard in sorted(set(index["weight_map"].values()))]
    else:
        raise CheckpointError(f"{folder}: no {MODEL_WEIGHTS} to resume the weights from")
    return {k: t for f in files for k, t in _load_tensors(f, finite=adapter).items()}


def restore_weights(model: nn.Module, folder: Path, adapter_name: str | None) -> None:
    """Load a step folder's adapter (into adapter `adapter_name`) or full weights into `model`, exactly; a
    model sharded by FSDP takes its part of the saved tensors on each rank."""
    is_peft, name = isinstance(model, PeftModel), adapter_name or "default"
    saved = _saved_weights(folder, is_peft)
    if is_peft and not fsdp.is_sharded(model):
        result = set_peft_model_state_dict(model, saved, adapter_name=name)
        unexpected = list(getattr(result, "unexpected_keys", []) or [])
        missing = [k for k in getattr(result, "missing_keys", []) or [] if "lora_" in k and f".{name}." in k]
        if unexpected or missing:
            raise CheckpointError(
                f"{folder / C.ADAPTER_WEIGHTS_FILE}: the adapter does not match the model (unexpected "
                f"{unexpected[:3]}, missing {missing[:3]})"
            )
        return
    # peft saves `….lora_A.weight` for the parameter `….lora_A.<adapter>.weight`
    wanted = [n for n, p in model.named_parameters() if p.requires_grad]
    names = {n: n.replace(f".{name}.", ".") if is_peft else n for n in wanted}
    lost = sorted(n for n, key in names.items() if key not in saved)
    if lost:
        raise CheckpointError(f"{folder}: trained weights missing from the checkpoint: {lost[:5]}")
    if fsdp.is_sharded(model):
        fsdp.load_full_state(model, {n: saved[key] for n, key in names.items()})
    else:
        model.load_state_dict(saved, strict=False)


def restore_parts(parts: list[Part], folder: Path) -> None:
    """Load each part's weights (and head) back from its place in step folder `folder`."""
    for part in parts:
        restore_weights(part.model, folder / part.subdir, part.adapter_name)
        if part.head is not None:
            tensors = _load_tensors(folder / part.subdir / C.VALUE_HEAD_FILE)
            part.head.load_state_dict({k: v.to(part.head.weight.dtype) for k, v in tensors.items()})
