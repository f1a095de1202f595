"""Checks that a LoRA adapter file is one hubkit reads and that attaching it changed the model (an
adapter of renamed tensors attaches silently and leaves the bare base).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from hubkit import constants as C
from hubkit.errors import CheckpointError, first_line

READ_PEFT_TYPES = ("LORA",)
MAX_SCALING = 1000.0


def check_config(folder: Path, config: dict[str, Any]) -> None:
    """Refuse an adapter config of a PEFT type hubkit does not read (IA3, prefix tuning, …), or a LoRA whose
    scaling (``lora_alpha / r``, ``/ sqrt(r)`` with rsLoRA) is not a finite number in ``(0, MAX_SCALING]``:
    zero makes the adapter do nothing, a huge one overflows the activations."""
    path = folder / C.ADAPTER_CONFIG_FILE
    kind = config.get("peft_type", "LORA")
    if str(kind).upper() not in READ_PEFT_TYPES:
        raise CheckpointError(
            f"{path}: field `peft_type` is {kind!r}; hubkit reads {' or '.join(READ_PEFT_TYPES)} adapters only "
            "(another type would load but not act as trained)"
        )
    alpha, r = config.get("lora_alpha", 8), config.get("r", 8)
    numbers = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (alpha, r))
    if not numbers or not math.isfinite(alpha) or r <= 0:
        raise CheckpointError(
            f"{path}: fields `lora_alpha` {alpha!r} and `r` {r!r} must be finite numbers, r > 0"
        )
    scaling = alpha / (math.sqrt(r) if config.get("use_rslora") else r)
    if not 0 < abs(scaling) <= MAX_SCALING:
        raise CheckpointError(
            f"{path}: field `lora_alpha` {alpha!r} gives a LoRA scaling of {scaling:.3g} (r={r}); hubkit loads "
            f"0 < |scaling| <= {MAX_SCALING:g} (trained adapters use about 0.5 to 16): the config is corrupt"
        )


def file_keys(folder: Path) -> list[str] | None:
    """The tensor names of the folder's ``adapter_model.safetensors`` (None for a legacy ``.bin``), each
    tensor checked finite as it is read (one at a time: a large adapter is never held twice)."""
    from safetensors import SafetensorError, safe_open

    path = folder / C.ADAPTER_WEIGHTS_FILE
    if not path.is_file():
        return None
    bad = []
    try:
        with safe_open(str(path), "pt") as f:
            keys = list(f.keys())
            for key in keys:
                t = f.get_tensor(key)
                if t.is_floating_point() and not torch.isfinite(t).all():
                    bad.append(key)
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(
            f"{path}: not a readable safetensors file ({first_line(exc)}); re-download or re-save it"
        ) from exc
    if bad:
        raise CheckpointError(
            f"{path}: {len(bad)} adapter tensor(s) hold NaN or inf (first: {sorted(bad)[0]}); the checkpoint is "
            "broken (a diverged training step or a bad conversion): use an earlier checkpoint"
        )
    return keys


def check_all_loaded(model: Any, name: str, folder: Path, keys: list[str]) -> None:
    """Every tensor of the adapter file must now be a parameter of adapter `name` in `model`."""
    from peft import get_peft_model_state_dict

    path = folder / C.ADAPTER_WEIGHTS_FILE
    if not keys:
        raise CheckpointError(f"{path}: holds no tensors; the adapter would change nothing")
    loaded = set(get_peft_model_state_dict(model, adapter_name=name))
    unloaded = sorted(k for k in keys if k not in loaded)
    if unloaded:
        raise CheckpointError(
            f"{path}: {len(unloaded)} of {len(keys)} adapter tensor(s) match no module of the base and "
            f"were not loaded (first: {unloaded[0]}); the keys are renamed or the adapter belongs to another "
            "model: re-save it with peft, or check `base_model`"
        )
