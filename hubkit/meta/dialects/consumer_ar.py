"""The LoRA-AR layout: ``ar_meta.json`` + ``ar_lora_value_head.safetensors``, read as its writer writes it.

The public writer is asherps/EasyNLA (``nla/train_sft.py``; its loaders
``scripts/show_nla_generations.load_ar_critic`` and ``nla/utils/critic.critic_predict``):

- ``ar_meta.json`` holds ``ar_num_layers`` (the K+1 kept blocks), ``lora_r``, ``lora_alpha``,
  ``quant``, ``target_modules`` (a list or a fullmatch regex) and ``final_norm_stripped``; no base
  model, no width, no template. The writer always builds rank-stabilised LoRA (``use_rslora=True``).
- The AR prompt is ``template.format(explanation=…)`` tokenized with ``add_special_tokens=False``.
- When ``final_norm_stripped`` is false (or absent: checkpoints from before it was recorded) the
  base's final norm is applied to the read-out; when true it is replaced by identity.
- The read-out is normalised to ``mse_scale`` before the fp32 head.
- The run's dataset sidecar is copied beside it as ``nla_meta.yaml`` when the run had one: width,
  layer, base model, templates, ``mse_scale`` and the marker tokens are taken from it when present.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hubkit import constants as C
from hubkit.errors import MetaError
from hubkit.meta.dialects._common import (
    Taker,
    adapter_from_folder,
    drop_none,
    folder_head,
    read_ar_meta_json,
    scale,
    templates,
)
from hubkit.meta.registry import register
from hubkit.meta.sections import DEFAULT_AR_TEMPLATE

_QUANTS = {None: "none", "none": "none", "4bit": "nf4", "nf4": "nf4", "8bit": "int8", "int8": "int8"}
SIDECAR_KEY = "__sidecar__"  # the dataset sidecar found beside ar_meta.json, passed in by NLAMeta.load


def _width_from_head(folder: Path, where: str) -> int:
    head_file = folder / C.AR_LORA_HEAD_FILE
    if not head_file.exists():
        raise MetaError(f"{where}: no `d_model` and no {C.AR_LORA_HEAD_FILE} to read the width from")
    from safetensors import safe_open

    with safe_open(str(head_file), "pt") as f:
        key = next(k for k in f.keys() if k.endswith("weight") and "lora_" not in k)
        return int(f.get_slice(key).get_shape()[0])


def _sidecar(data: dict[str, Any], where: str) -> tuple[dict[str, Any], dict[str, Any], str | None]:
    """(extraction, tokens, AR template) of the dataset sidecar copied beside the AR, when there is one."""
    side = data.get(SIDECAR_KEY)
    if not isinstance(side, dict):
        return {}, {}, None
    t = Taker(side, where)
    _, ar_tmpl = templates(t, where)
    ext = side.get("extraction") if isinstance(side.get("extraction"), dict) else {}
    tokens = side.get("tokens") if isinstance(side.get("tokens"), dict) else {}
    return ext, tokens, ar_tmpl


@register("consumer-gpu-ar", priority=40, detect=lambda d: d.get("__ar_meta_json__") is True)
def read_consumer_ar(
    data: dict[str, Any], where: str, folder: Path | None
) -> tuple[dict[str, Any], list[str]]:
    assert folder is not None
    ar_meta = read_ar_meta_json(folder)
    ext, tokens, ar_tmpl = _sidecar(data, where)
    defaults: list[str] = []
    adapter, adapter_base = adapter_from_folder(folder)
    base = ar_meta.get("base_model") or ext.get("base_model") or adapter_base or ""
    if not base:
        defaults.append(
            "base_model → none recorded (given at load: base_model=, --base-model, or the pair's AV)"
        )
    d_model = ar_meta.get("d_model") or ext.get("d_model") or _width_from_head(folder, where)
    n = ar_meta.get("ar_num_layers")
    if n is None:
        raise MetaError(f"{where}: field `ar_num_layers` is required but missing")
    if ext.get("layer_index") is not None and ext["layer_index"] != int(n) - 1:
        raise MetaError(
            f"{where}: field `ar_num_layers` is {n} but the dataset sidecar's `extraction.layer_index` is "
            f"{ext['layer_index']}; the AR keeps layer_index + 1 blocks"
        )
    mse_scale = scale(ext.get("mse_scale", "sqrt_d_model"), where, "extraction.mse_scale")
    if "mse_scale" not in ext:
        defaults.append("mse_scale → sqrt_d_model (the writer's default)")
    head_format, head_bias = folder_head(folder)
    adapter["kind"] = "lora"  # the LoRA tensors live in the head file, not in an adapter_config.json
    adapter["r"] = ar_meta.get("lora_r", adapter.get("r"))
    adapter["alpha"] = ar_meta.get("lora_alpha", adapter.get("alpha"))
    adapter["target_modules"] = ar_meta.get("target_modules", adapter.get("target_modules"))
    adapter["rslora"] = bool(ar_meta.get("use_rslora", True))
    if "use_rslora" not in ar_meta:
        defaults.append("adapter.rslora → true (the writer always builds rank-stabilised LoRA)")
    quant = ar_meta.get("quant")
    if quant not in _QUANTS:
        raise MetaError(
            f"{where}: field `quant` is {quant!r}; expected one of {sorted(k for k in _QUANTS if k)} or null"
        )
    adapter["quant"] = _QUANTS[quant]
    stripped = bool(ar_meta.get("final_norm_stripped", False))
    if "final_norm_stripped" not in ar_meta:
        defaults.append("ar.final_norm → true (`final_norm_stripped` absent: the base's final norm was kept)")
    if ar_tmpl is None:
        defaults.append("ar.template → hubkit default")
    defaults.append("ar.add_bos → false (the writer tokenizes the AR prompt with add_special_tokens=False)")
    injection = drop_none(
        {
            "marker": tokens.get("injection_char"),
            "marker_token_id": tokens.get("injection_token_id"),
            "left_neighbor_id": tokens.get("injection_left_neighbor_id"),
            "right_neighbor_id": tokens.get("injection_right_neighbor_id"),
        }
    )
    out: dict[str, Any] = {
        "role": "ar",
        "base_model": base,
        "d_model": d_model,
        "layer": int(n) - 1,
        "mse_scale": mse_scale,
        "adapter": {k: v for k, v in adapter.items() if v is not None},
        "ar": drop_none(
            {
                "num_layers": int(n),
                "template": ar_tmpl or DEFAULT_AR_TEMPLATE,
                "head_format": head_format or "ar_lora_value_head",
                "head_bias": bool(head_bias),
                "add_bos": False,
                "input_norm": "mse_scale",
                "final_norm": not stripped,
                "suffix_ids": tokens.get("critic_suffix_ids"),
            }
        ),
        "legacy": {"ar_meta_json": ar_meta},
    }
    if injection:
        out["injection"] = injection
    return out, defaults
