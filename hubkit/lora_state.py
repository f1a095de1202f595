"""LoRA tensors stored inside an AR head file (asherps/EasyNLA ``nla/train_sft.py``), attached onto a
base with peft; a tensor matching no module, or a kept block's module without one, is an error.
"""

from __future__ import annotations

import re
from pathlib import Path

from torch import Tensor, nn

from hubkit.errors import CheckpointError
from hubkit.meta import NLAMeta

_WRITER_PREFIX = "backbone."  # the critic module's attribute holding the causal LM
_PEFT_PREFIX = "base_model.model."
_ADAPTER_SEGMENT = re.compile(
    r"\.(lora_[AB]|lora_embedding_[AB]|lora_magnitude_vector)\.[A-Za-z0-9_]+(\.weight)?$"
)
_BLOCK = re.compile(r"\.layers\.(\d+)\.")


def peft_key(key: str) -> str:
    """A LoRA tensor name as written (writer's or peft's own) → the name `set_peft_model_state_dict` reads."""
    k = key.removeprefix(_WRITER_PREFIX)
    m = _ADAPTER_SEGMENT.search(k)
    if m is not None and m.group(2):  # ``lora_A.<adapter>.weight`` → ``lora_A.weight``
        k = k[: m.start()] + f".{m.group(1)}.weight"
    return k if k.startswith(_PEFT_PREFIX) else _PEFT_PREFIX + k


def attach_lora_state(model: nn.Module, meta: NLAMeta, state: dict[str, Tensor], folder: Path) -> nn.Module:
    """Build the LoRA the meta describes (rsLoRA when it says so) and load `state` into it, checked both ways."""
    from peft import LoraConfig, get_peft_model, set_peft_model_state_dict

    a = meta.adapter
    if a.r is None or a.target_modules is None:
        raise CheckpointError(
            f"{folder}: LoRA tensors in the head file but no `lora_r`/`target_modules` in its meta"
        )
    cfg = LoraConfig(
        r=a.r,
        lora_alpha=a.alpha or a.r,
        target_modules=a.target_modules,
        lora_dropout=0.0,
        use_rslora=a.rslora,
    )
    peft_model = get_peft_model(model, cfg, adapter_name="ar")
    mapped = {peft_key(k): v for k, v in state.items()}
    result = set_peft_model_state_dict(peft_model, mapped, adapter_name="ar")
    unexpected = [k for k in getattr(result, "unexpected_keys", []) if "lora_" in k]
    if unexpected:
        raise CheckpointError(f"{folder}: LoRA tensors that match no module of the base: {unexpected[:5]}")
    kept = meta.ar.num_layers if meta.ar is not None else None
    loaded = {k.removesuffix(".weight") + ".ar.weight" for k in mapped}
    lora = [name for name, _ in peft_model.named_parameters() if ".ar." in name and "lora_" in name]
    missing = [name for name in lora if name not in loaded and _in_kept(name, kept)]
    if missing:
        raise CheckpointError(
            f"{folder}: the head file has no tensor for {len(missing)} LoRA module(s) of the kept blocks "
            f"(first: {missing[0]}); `target_modules` in its meta does not match the file"
        )
    return peft_model


def _in_kept(name: str, kept: int | None) -> bool:
    m = _BLOCK.search(name)
    return kept is None or m is None or int(m.group(1)) < kept
