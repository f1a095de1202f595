"""The reference implementation's model sidecars (``schema_version: 2``; older ones without it).

Trainer-written actor sidecars record no layer (the pair takes it from its AR); critic sidecars
record ``critic.extraction_layer_index`` (older: ``critic.num_hidden_layers``; docs:
``ar.num_hidden_layers``; the release scrub: a top-level ``extraction_layer_index``), each K.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hubkit import constants as C
from hubkit.errors import MetaError
from hubkit.meta.dialects._common import (
    DEPTH_FIELDS,
    Taker,
    adapter_from_folder,
    drop_none,
    extraction_layer,
    first,
    folder_head,
    role,
    scale,
    templates,
)
from hubkit.meta.registry import register
from hubkit.meta.sections import DEFAULT_AR_TEMPLATE, DEFAULT_AV_TEMPLATE


def _detect(d: dict[str, Any]) -> bool:
    # Reference dataset sidecars carry `schema_version` and `prompt_templates` too: they are the
    # residual-add variant's meta and go to that reader.
    return d.get("kind") != "nla_dataset" and (d.get("schema_version") == 2 or "prompt_templates" in d)


def _scales(t: Taker, where: str, defaults: list[str]) -> tuple[Any, Any]:
    ext = t.data.get("extraction") if isinstance(t.data.get("extraction"), dict) else {}
    inj = scale(t.pop("extraction.injection_scale"), where, "extraction.injection_scale")
    mse_present = "mse_scale" in ext
    mse = scale(t.pop("extraction.mse_scale"), where, "extraction.mse_scale")
    if not mse_present:
        mse = "sqrt_d_model"
        defaults.append("extraction.mse_scale absent → sqrt_d_model")
    elif mse is None:
        defaults.append("extraction.mse_scale null → raw-MSE mode (kept null)")
    return inj, mse


@register("reference-v2", priority=20, detect=_detect)
def read_reference(data: dict[str, Any], where: str, folder: Path | None) -> tuple[dict[str, Any], list[str]]:
    t = Taker(data, where)
    defaults: list[str] = []
    needed = t.pop(C.RECORD_NEEDED_KEY)
    if needed:
        raise MetaError(
            f"{where}: written by hubkit with settings its reference keys cannot express ({needed}), but its "
            f"`hubkit:` record is missing, so they cannot be read back: restore the record (or the original "
            f"file), or delete `{C.RECORD_NEEDED_KEY}` to accept the reference defaults for those fields"
        )
    t.pop("schema_version")
    kind = t.pop("kind")
    if kind not in (None, "nla_model"):
        raise MetaError(f"{where}: field `kind` is {kind!r}; a model meta has `kind: nla_model`")
    head_format, head_bias = folder_head(folder)
    given_role = t.pop("role")
    if given_role is None:  # the docs' minimal sidecars: the folder's files say which half it is
        the_role = "ar" if head_format else "av"
        defaults.append(
            f"role → {the_role} (no `role`; {'an AR head' if head_format else 'no AR head'} in the folder)"
        )
    else:
        the_role = role(given_role, where)
    d_model = t.pop("d_model")
    if d_model is None:
        raise MetaError(f"{where}: field `d_model` is required but missing")
    layer = extraction_layer(t, where)
    for key in ("extraction.layer_index", "extraction.layer"):
        v = t.pop(key)
        if v is not None and layer is not None and v != layer:
            raise MetaError(
                f"{where}: contradictory layer: field `{key}` is {v} but the AR depth says {layer}"
            )
        layer = v if layer is None else layer
    if layer is None and the_role == "ar":
        raise MetaError(
            f"{where}: no layer: expected `{DEPTH_FIELDS[0]}` (or `{'`, `'.join(DEPTH_FIELDS[1:])}`), "
            "which holds the extraction layer K"
        )
    if layer is None:
        defaults.append("layer → none (an actor sidecar records none; the pair takes its AR's)")
    inj_scale, mse_scale = _scales(t, where, defaults)
    av_tmpl, ar_tmpl = templates(t, where)
    base = t.pop("base_checkpoint", t.pop("base_model"))
    adapter, adapter_base = adapter_from_folder(folder)
    base = base or adapter_base
    if base is None and adapter["kind"] == "full" and folder is not None:
        base = ""  # the docs' minimal sidecars: full weights in the folder need no base to load
        defaults.append("base_model → none (no `base_checkpoint`; the folder holds full weights)")
    if base is None:
        raise MetaError(
            f"{where}: field `base_checkpoint` is required for an adapter checkpoint (the base it applies to)"
        )
    injection = {
        "scheme": "embedding_replace",
        "scale": inj_scale,
        "marker": t.pop("tokens.injection_char"),
        "marker_token_id": t.pop("tokens.injection_token_id"),
        "left_neighbor_id": t.pop("tokens.injection_left_neighbor_id"),
        "right_neighbor_id": t.pop("tokens.injection_right_neighbor_id"),
    }
    if the_role == "av" and injection["marker"] is None and injection["marker_token_id"] is None:
        raise MetaError(f"{where}: an AV meta needs `tokens.injection_char` or `tokens.injection_token_id`")
    out: dict[str, Any] = {
        "role": the_role,
        "base_model": base,
        "d_model": d_model,
        "layer": layer,
        "mse_scale": mse_scale,
        "adapter": adapter,
        "injection": drop_none(injection),
        "training": drop_none(
            {
                "stage": t.pop("stage"),
                "lr": t.pop("training.lr"),
                "loss_type": t.pop("training.loss_type"),
                "global_batch_size": t.pop("training.global_batch_size"),
                "parent": first(t.pop("parent_checkpoints")),
            }
        ),
        "av": {"template": av_tmpl or DEFAULT_AV_TEMPLATE, "chat_template": True},
    }
    defaults.append("injection.scheme → embedding_replace")
    if av_tmpl is None:
        defaults.append("av.template → hubkit default")
    defaults.append("av.chat_template → true")
    num_layers = None if layer is None else layer + 1
    if layer is not None:
        defaults.append(f"ar.num_layers → layer + 1 = {num_layers}")
    out["ar"] = drop_none(
        {
            "num_layers": num_layers,
            "template": ar_tmpl or DEFAULT_AR_TEMPLATE,
            "head_format": head_format or "value_head",
            "head_bias": bool(head_bias),
            "add_bos": "tokenizer",
            "input_norm": "none",
            "suffix_ids": t.pop("tokens.critic_suffix_ids"),
        }
    )
    defaults.append(
        "ar.add_bos → tokenizer (BOS only where the tokenizer adds one, as the reference tokenizes), ar.input_norm → none"
    )
    trained_on = t.pop("trained_on")
    legacy = t.leftovers()
    if trained_on is not None:
        legacy["trained_on"] = trained_on
    if legacy:
        out["legacy"] = legacy
    return out, defaults
