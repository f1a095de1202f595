"""The consumer-GPU release: ``kind: nla_model``, top-level ``base_model``, ``av_lora``, raw AV template."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hubkit import constants as C
from hubkit.errors import MetaError
from hubkit.meta.dialects._common import Taker, drop_none, folder_head, read_ar_meta_json, role, scale
from hubkit.meta.registry import register
from hubkit.meta.sections import DEFAULT_AR_TEMPLATE, DEFAULT_AV_TEMPLATE


def _detect(d: dict[str, Any]) -> bool:
    return "av_lora" in d or ("base_model" in d and "extraction" in d and "kind" in d)


@register("consumer-gpu", priority=30, detect=_detect)
def read_consumer(data: dict[str, Any], where: str, folder: Path | None) -> tuple[dict[str, Any], list[str]]:
    t = Taker(data, where)
    defaults: list[str] = []
    kind = t.pop("kind")
    if kind != "nla_model":
        raise MetaError(f"{where}: field `kind` is {kind!r}; expected nla_model")
    the_role = role(t.pop("role", "actor"), where)
    d_model = t.pop("extraction.d_model", t.pop("d_model"))
    layer = t.pop("extraction.layer")
    if d_model is None or layer is None:
        raise MetaError(f"{where}: fields `extraction.d_model` and `extraction.layer` are required")
    ext = t.data.get("extraction") if isinstance(t.data.get("extraction"), dict) else {}
    mse_present = "mse_scale" in ext
    inj_scale = scale(t.pop("extraction.injection_scale"), where, "extraction.injection_scale")
    mse_scale = scale(t.pop("extraction.mse_scale"), where, "extraction.mse_scale")
    if not mse_present:
        mse_scale = "sqrt_d_model"
        defaults.append("extraction.mse_scale absent → sqrt_d_model")
    lora = t.pop("av_lora") or {}
    out: dict[str, Any] = {
        "role": the_role,
        "base_model": t.pop("base_model"),
        "d_model": d_model,
        "layer": layer,
        "mse_scale": mse_scale,
        "injection": drop_none(
            {
                "scheme": "embedding_replace",
                "scale": inj_scale,
                "marker_token_id": t.pop("tokens.injection_token_id"),
                "left_neighbor_id": t.pop("tokens.injection_left_neighbor_id"),
                "right_neighbor_id": t.pop("tokens.injection_right_neighbor_id"),
            }
        ),
        "av": {"template": t.pop("prompt_template", DEFAULT_AV_TEMPLATE), "chat_template": False},
        "ar": _consumer_ar(folder, layer, defaults),
        "adapter": drop_none(
            {
                "kind": "lora",
                "r": lora.pop("r", None),
                "alpha": lora.pop("alpha", None),
                "target_modules": lora.pop("target_modules_regex", lora.pop("target_modules", None)),
            }
        ),
        "training": drop_none({"lr": t.pop("training.lr"), "step": t.pop("training.steps_completed")}),
    }
    defaults += ["injection.scheme → embedding_replace", "av.chat_template → false (raw template)"]
    legacy = t.leftovers()
    if legacy:
        out["legacy"] = legacy
    return out, defaults


def _consumer_ar(folder: Path | None, layer: int, defaults: list[str]) -> dict[str, Any]:
    ar_meta: dict[str, Any] = {}
    if folder is not None and (folder / C.AR_META_JSON).exists():
        ar_meta = read_ar_meta_json(folder)
    n = ar_meta.get("ar_num_layers")
    if n is None:
        n = layer + 1
        defaults.append(f"ar.num_layers → layer + 1 = {n}")
    head_format, head_bias = folder_head(folder)
    return {
        "num_layers": int(n),
        "template": DEFAULT_AR_TEMPLATE,
        "head_format": head_format or "ar_lora_value_head",
        "head_bias": bool(head_bias),
        "add_bos": True,
        "input_norm": "mse_scale",
    }
