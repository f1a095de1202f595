"""The consumer-GPU release's AR: ``ar_meta.json`` + ``ar_lora_value_head.safetensors``, no nla_meta.yaml."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hubkit import constants as C
from hubkit.errors import MetaError
from hubkit.meta.dialects._common import adapter_from_folder, folder_head, read_ar_meta_json
from hubkit.meta.registry import register
from hubkit.meta.sections import DEFAULT_AR_TEMPLATE

_QUANTS = {None: "none", "none": "none", "4bit": "nf4", "nf4": "nf4", "8bit": "int8", "int8": "int8"}


def _width_from_head(folder: Path, where: str) -> int:
    head_file = folder / C.AR_LORA_HEAD_FILE
    if not head_file.exists():
        raise MetaError(f"{where}: no `d_model` and no {C.AR_LORA_HEAD_FILE} to read the width from")
    from safetensors import safe_open

    with safe_open(str(head_file), "pt") as f:
        key = next(k for k in f.keys() if k.endswith("weight") and "lora_" not in k)
        return int(f.get_slice(key).get_shape()[0])


@register("consumer-gpu-ar", priority=40, detect=lambda d: d.get("__ar_meta_json__") is True)
def read_consumer_ar(
    data: dict[str, Any], where: str, folder: Path | None
) -> tuple[dict[str, Any], list[str]]:
    assert folder is not None
    ar_meta = read_ar_meta_json(folder)
    adapter, base = adapter_from_folder(folder)
    base = ar_meta.get("base_model", base)
    if base is None:
        raise MetaError(
            f"{where}: no base model: neither `base_model` here nor an adapter_config.json beside it"
        )
    d_model = ar_meta.get("d_model")
    if d_model is None:
        d_model = _width_from_head(folder, where)
    n = ar_meta.get("ar_num_layers")
    if n is None:
        raise MetaError(f"{where}: field `ar_num_layers` is required but missing")
    defaults: list[str] = ["ar.template → hubkit default", "ar.add_bos → true", "mse_scale → sqrt_d_model"]
    head_format, head_bias = folder_head(folder)
    if ar_meta.get("lora_r") is not None:
        adapter["kind"] = "lora"  # the LoRA tensors live in the head file, not in an adapter_config.json
        adapter["r"] = ar_meta["lora_r"]
    if ar_meta.get("lora_alpha") is not None:
        adapter["alpha"] = ar_meta["lora_alpha"]
    if ar_meta.get("target_modules") is not None:
        adapter["target_modules"] = ar_meta["target_modules"]
    quant = ar_meta.get("quant")
    if quant not in _QUANTS:
        raise MetaError(
            f"{where}: field `quant` is {quant!r}; expected one of {sorted(k for k in _QUANTS if k)} or null"
        )
    adapter["quant"] = _QUANTS[quant]
    return (
        {
            "role": "ar",
            "base_model": base,
            "d_model": d_model,
            "layer": int(n) - 1,
            "mse_scale": "sqrt_d_model",
            "adapter": {k: v for k, v in adapter.items() if v is not None},
            "ar": {
                "num_layers": int(n),
                "template": DEFAULT_AR_TEMPLATE,
                "head_format": head_format or "ar_lora_value_head",
                "head_bias": bool(head_bias),
                "add_bos": True,
                "input_norm": "mse_scale",
            },
            "legacy": {"ar_meta_json": ar_meta},
        },
        defaults,
    )
