"""What an external engine loads to generate as an in-memory AV does: the base folder, and the LoRA
adapter written to a cache folder named by its weights' sha256 (a trained adapter is new each step).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from pathlib import Path

from torch import nn

from hubkit import arch
from hubkit.engines.common import ModelSource, engine_cache_dir, prune
from hubkit.errors import EngineError

KEEP_ADAPTERS = 8
"""Adapter copies kept in the cache (a policy being trained writes one per step)."""


def base_folder(model: nn.Module, base_model: str | None = None) -> str:
    """The folder holding `model`'s base weights (HF layout), or an error saying what to pass."""
    from peft import PeftModel

    plain = model.get_base_model() if isinstance(model, PeftModel) else model
    for c in (base_model, getattr(plain, "name_or_path", None)):
        if c and (Path(c) / "config.json").is_file():
            return str(c)
    raise EngineError(
        "the AV's base model was not loaded from a folder, so an external engine cannot load it; "
        "save it with save_pretrained and pass base_model=<folder>, or use engine transformers"
    )


def adapter_folder(model: nn.Module, adapter_name: str | None) -> str | None:
    """The active AV adapter written to a cache folder keyed by its weights' sha256 (None: no adapter)."""
    from peft import PeftModel
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import save

    if adapter_name is None or not isinstance(model, PeftModel):
        return None
    state = get_peft_model_state_dict(model, adapter_name=adapter_name)
    blob = save({k: v.detach().cpu().contiguous() for k, v in sorted(state.items())})
    digest = hashlib.sha256(blob).hexdigest()
    out = engine_cache_dir() / "adapters" / digest[:24]
    if not (out / "adapter_model.safetensors").is_file():
        tmp = out.with_name(out.name + f".partial{os.getpid()}")
        model.save_pretrained(str(tmp), selected_adapters=[adapter_name])
        written = tmp / adapter_name if (tmp / adapter_name).is_dir() else tmp
        with contextlib.suppress(OSError):  # another process wrote the same adapter first
            written.rename(out)
        shutil.rmtree(tmp, ignore_errors=True)
        prune(out.parent, keep=KEEP_ADAPTERS)
    else:
        out.touch()  # recently used: kept by `prune`
    return str(out)


def source_for(
    model: nn.Module,
    adapter_name: str | None,
    quant: str = "none",
    base_model: str | None = None,
    max_model_len: int = 1024,
) -> ModelSource:
    """The `ModelSource` that reproduces `model` (with adapter `adapter_name` active) in another engine."""
    p = next(model.parameters())
    if positions := arch.context_length(model):  # vLLM refuses a max_model_len beyond the model's positions
        max_model_len = min(max_model_len, positions)
    base, dtype = base_folder(model, base_model), str(p.dtype).removeprefix("torch.")
    device = "cuda" if p.device.type == "cuda" else "cpu"
    return ModelSource(base, adapter_folder(model, adapter_name), dtype, device, quant, max_model_len)
