"""The residual-add variant: a dataset sidecar (``kind: nla_dataset``) copied into the checkpoint.

Nothing in it says which injection scheme was used; the variant's scheme (norm-matched residual
addition at block 1) is applied and logged. The role follows from the files present.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hubkit.errors import MetaError
from hubkit.meta.dialects._common import Taker, adapter_from_folder, folder_head, templates
from hubkit.meta.registry import register
from hubkit.meta.sections import DEFAULT_AR_TEMPLATE, DEFAULT_AV_TEMPLATE


@register("residual-add-sidecar", priority=50, detect=lambda d: d.get("kind") == "nla_dataset")
def read_residual_sidecar(
    data: dict[str, Any], where: str, folder: Path | None
) -> tuple[dict[str, Any], list[str]]:
    t = Taker(data, where)
    t.pop("kind")
    ext = t.pop("extraction") or {}
    missing = [k for k in ("d_model", "layer_index") if k not in ext]
    if missing:
        raise MetaError(f"{where}: field `extraction.{missing[0]}` is required but missing")
    adapter, adapter_base = adapter_from_folder(folder)
    base = ext.get("base_model") or adapter_base
    if base is None:
        raise MetaError(f"{where}: field `extraction.base_model` is required but missing")
    head_format, head_bias = folder_head(folder)
    role = "ar" if head_format else "av"
    layer = ext["layer_index"]
    if isinstance(layer, bool) or not isinstance(layer, int):
        raise MetaError(f"{where}: field `extraction.layer_index` must be an integer, got {layer!r}")
    # Reference sidecars also record the marker tokens and both prompt templates: use them.
    injection: dict[str, Any] = {
        "scheme": "residual_add",
        "block": 1,
        "marker": t.pop("tokens.injection_char"),
        "marker_token_id": t.pop("tokens.injection_token_id"),
        "left_neighbor_id": t.pop("tokens.injection_left_neighbor_id"),
        "right_neighbor_id": t.pop("tokens.injection_right_neighbor_id"),
    }
    suffix = t.pop("tokens.critic_suffix_ids")
    av_tmpl, ar_tmpl = templates(t, where)
    defaults = ["injection.scheme → residual_add at block 1 (the sidecar does not record it)"]
    if injection["marker"] is None and injection["marker_token_id"] is None:
        defaults.append(
            "injection.marker → first single-token candidate of hubkit.injection.MARKER_CANDIDATES"
        )
    if av_tmpl is None:
        defaults.append("av.template → hubkit default")
    if ar_tmpl is None:
        defaults.append("ar.template → hubkit default")
    defaults += [
        "av.chat_template → true",
        "ar.add_bos → tokenizer (BOS only where the tokenizer adds one, as the reference tokenizes), ar.input_norm → none",
        f"role → {role} (from the files present)",
        "mse_scale → sqrt_d_model",
    ]
    legacy = {"dataset_sidecar": {**t.leftovers(), "extraction": ext}}
    return (
        {
            "role": role,
            "base_model": base,
            "d_model": ext["d_model"],
            "layer": layer,
            "mse_scale": "sqrt_d_model",
            "adapter": {k: v for k, v in adapter.items() if v is not None},
            "injection": {k: v for k, v in injection.items() if v is not None},
            "av": {"template": av_tmpl or DEFAULT_AV_TEMPLATE, "chat_template": True},
            "ar": {
                "num_layers": layer + 1,
                "template": ar_tmpl or DEFAULT_AR_TEMPLATE,
                "head_format": head_format or "linear_head_pt",
                "head_bias": True if head_bias is None else head_bias,
                "add_bos": "tokenizer",
                "input_norm": "none",
                "suffix_ids": suffix,
            },
            "legacy": legacy,
        },
        defaults,
    )
