"""The published ``nla_meta`` dialects: one registered reader each (lower priority tried first), mapping
a file onto hubkit's schema (as a dict) and returning the defaults it applied; a scale is never guessed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safetensors import safe_open

from hubkit import constants as C
from hubkit.errors import MetaError
from hubkit.meta.registry import Defaults, Dialect, ordered, register
from hubkit.meta.sections import (
    DEFAULT_AR_TEMPLATE,
    DEFAULT_AV_TEMPLATE,
    EXPLANATION_PLACEHOLDER,
    MARKER_PLACEHOLDER,
    ROLE_ALIASES,
    parse_scale,
)

# -- what the readers share ---------------------------------------------------------------------------
# The published spellings of the extraction layer K; every one holds K (the AR keeps K+1 blocks).
DEPTH_FIELDS = (
    "critic.extraction_layer_index",
    "extraction_layer_index",
    "critic.num_hidden_layers",
    "ar.num_hidden_layers",
)
MARKER_KEYS = {  # `Injection` field → the reference's key under ``tokens:``
    "marker": "injection_char",
    "marker_token_id": "injection_token_id",
    "left_neighbor_id": "injection_left_neighbor_id",
    "right_neighbor_id": "injection_right_neighbor_id",
}
_BOS_AS_REFERENCE = "ar.add_bos → tokenizer (BOS only where the tokenizer adds one, as the reference tokenizes), ar.input_norm → none"
_QUANTS = {None: "none", "none": "none", "4bit": "nf4", "nf4": "nf4", "8bit": "int8", "int8": "int8"}
SIDECAR_KEY = "__sidecar__"  # the dataset sidecar found beside ar_meta.json, passed in by NLAMeta.load
AR_META_JSON_KEY = "__ar_meta_json__"  # set by NLAMeta.load for a folder in the LoRA-AR layout


class Taker:
    """Pops fields from a legacy mapping; whatever is left over is reported or kept as `legacy`."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    def pop(self, dotted: str, default: Any = None) -> Any:
        *parents, last = dotted.split(".")
        node = self.data
        for p in parents:
            node = node.get(p) if isinstance(node, dict) else None
        if not isinstance(node, dict) or last not in node:
            return default
        return node.pop(last)

    def leftovers(self) -> dict[str, Any]:
        def prune(d: Any) -> Any:
            if not isinstance(d, dict):
                return d
            return {k: v for k, v in ((k, prune(v)) for k, v in d.items()) if v not in ({}, None)}

        return prune(self.data)


def drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


def role(value: Any, where: str) -> str:
    if value not in ROLE_ALIASES:
        raise MetaError(f"{where}: field `role` must be one of {sorted(ROLE_ALIASES)}, got {value!r}")
    return ROLE_ALIASES[value]


def marker_tokens(t: Taker, prefix: str = "tokens.") -> dict[str, Any]:
    """The marker and its neighbours' token ids, from the reference's ``tokens.*`` keys (absent ones left out)."""
    return drop_none({name: t.pop(prefix + key) for name, key in MARKER_KEYS.items()})


def mse_scale(t: Taker, where: str, defaults: Defaults) -> Any:
    """``extraction.mse_scale``; absent → sqrt_d_model, null → the reference's raw-MSE mode (kept null)."""
    ext = t.data.get("extraction")
    if not isinstance(ext, dict) or "mse_scale" not in ext:
        defaults.append("extraction.mse_scale absent → sqrt_d_model")
        return "sqrt_d_model"
    value = parse_scale(t.pop("extraction.mse_scale"), where, "extraction.mse_scale")
    if value is None:
        defaults.append("extraction.mse_scale null → raw-MSE mode (kept null)")
    return value


def extraction_layer(t: Taker, where: str) -> int | None:
    """K from whichever of the published depth spellings are present; they must agree."""
    found = {key: v for key in DEPTH_FIELDS if (v := t.pop(key)) is not None}
    for key, v in found.items():
        if isinstance(v, bool) or not isinstance(v, int):
            raise MetaError(f"{where}: field `{key}` must be an integer, got {v!r}")
    first_key, first_value = next(iter(found.items()), (None, None))
    other = next(((k, v) for k, v in found.items() if v != first_value), None)
    if other is not None:
        raise MetaError(
            f"{where}: contradictory AR depth: field `{first_key}` is {first_value} but field `{other[0]}` is "
            f"{other[1]} (each holds the extraction layer K; the AR keeps K+1 blocks); keep one"
        )
    return first_value


def folder_head(folder: Path | None) -> tuple[str | None, bool | None]:
    """The AR head file's format in a checkpoint folder, and whether it carries a bias (None, None: no head)."""
    for head_format, name in C.HEAD_FILES.items():
        if folder is None or not (folder / name).exists():
            continue
        if name.endswith(".pt"):  # a legacy .pt always has one
            return head_format, True
        with safe_open(str(folder / name), "pt") as f:
            return head_format, any(k.endswith("bias") for k in f.keys())
    return None, None


def adapter_from_folder(folder: Path | None) -> tuple[dict[str, Any], str | None]:
    """The `adapter` section from a folder's adapter_config.json (full weights without one), and its base."""
    if folder is None or not (folder / C.ADAPTER_CONFIG_FILE).exists():
        return {"kind": "full"}, None
    cfg = json.loads((folder / C.ADAPTER_CONFIG_FILE).read_text())
    tm = cfg.get("target_modules")
    adapter = {
        "kind": "lora",
        "r": cfg.get("r"),
        "alpha": cfg.get("lora_alpha"),
        "target_modules": sorted(tm) if isinstance(tm, (list, set)) else tm,
        "rslora": bool(cfg.get("use_rslora", False)),
    }
    return adapter, cfg.get("base_model_name_or_path")


def templates(t: Taker, where: str) -> tuple[str | None, str | None]:
    """(AV, AR) templates from `prompt_templates`, each checked for its placeholder; null counts as absent."""
    found_all = t.pop("prompt_templates") or {}
    if not isinstance(found_all, dict):
        raise MetaError(f"{where}: field `prompt_templates` must be a mapping, got {found_all!r}")
    out: list[str | None] = []
    halves = ((("av", "actor"), MARKER_PLACEHOLDER), (("ar", "critic"), EXPLANATION_PLACEHOLDER))
    for names, placeholder in halves:
        found = drop_none({n: found_all.pop(n) for n in names if n in found_all})
        if len(set(map(str, found.values()))) > 1:
            raise MetaError(
                f"{where}: fields `prompt_templates.{names[0]}` and `.{names[1]}` differ; keep one"
            )
        for name, tmpl in found.items():
            if not isinstance(tmpl, str) or tmpl.count(placeholder) != 1:
                raise MetaError(
                    f"{where}: field `prompt_templates.{name}` must be a string holding {placeholder} exactly once, "
                    f"got {tmpl!r}"
                )
        out.append(next(iter(found.values()), None))
    if found_all:
        raise MetaError(f"{where}: unknown field(s) under `prompt_templates`: {sorted(found_all)}")
    return out[0], out[1]


def reference_prompts(av_tmpl: str | None, ar_tmpl: str | None, defaults: Defaults) -> tuple[dict, dict]:
    """The `av` section and the AR's prompt fields as the reference uses them: a chat-wrapped AV, an AR
    prompt with BOS only where the tokenizer adds one and no input norm."""
    for name, tmpl in (("av", av_tmpl), ("ar", ar_tmpl)):
        if tmpl is None:
            defaults.append(f"{name}.template → hubkit default")
    defaults += ["av.chat_template → true", _BOS_AS_REFERENCE]
    av = {"template": av_tmpl or DEFAULT_AV_TEMPLATE, "chat_template": True}
    return av, {"template": ar_tmpl or DEFAULT_AR_TEMPLATE, "add_bos": "tokenizer", "input_norm": "none"}


def read_ar_meta_json(folder: Path) -> dict[str, Any]:
    """The consumer-GPU AR's ``ar_meta.json``: a JSON object, else one error naming the file."""
    path = folder / C.AR_META_JSON
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise MetaError(f"{path}: not valid UTF-8 JSON ({exc}); restore the file from the release") from exc
    if not isinstance(data, dict):
        raise MetaError(f"{path}: expected a JSON object at the top level, got {type(data).__name__}")
    return data


# -- hubkit's own schema --------------------------------------------------------------------------------
def _is_hubkit(d: dict[str, Any]) -> bool:
    return isinstance(d.get(C.HUBKIT_KEY), dict) or str(d.get("schema", "")).startswith("hubkit.nla/")


@register("hubkit", priority=10, detect=_is_hubkit, scale_field="injection.scale")
def read_hubkit(data: dict[str, Any], where: str, folder: Path | None) -> tuple[dict[str, Any], Defaults]:
    """The record under ``hubkit:`` (the reference keys beside it checked by `NLAMeta`), or top-level."""
    record = data.pop(C.HUBKIT_KEY, None)
    if record is None:
        record = data
    elif "schema" in data:
        raise MetaError(f"{where}: field `schema` belongs under `{C.HUBKIT_KEY}:`, not beside it; keep one")
    if record.get("schema") != C.SCHEMA_VERSION:
        raise MetaError(
            f"{where}: field `schema` is {record.get('schema')!r}; this hubkit reads {C.SCHEMA_VERSION!r}"
        )
    return record, []


# -- the reference implementation's model sidecars ------------------------------------------------------
def _is_reference(d: dict[str, Any]) -> bool:
    # Reference dataset sidecars carry `schema_version` and `prompt_templates` too: they are the
    # residual-add variant's meta and go to that reader.
    return d.get("kind") != "nla_dataset" and (d.get("schema_version") == 2 or "prompt_templates" in d)


@register("reference-v2", priority=20, detect=_is_reference)
def read_reference(data: dict[str, Any], where: str, folder: Path | None) -> tuple[dict[str, Any], Defaults]:
    """``schema_version: 2``; actor sidecars record no layer, critic ones K in one of `DEPTH_FIELDS`."""
    t = Taker(data)
    defaults: Defaults = []
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
        found = "an AR head" if head_format else "no AR head"
        defaults.append(f"role → {the_role} (no `role`; {found} in the folder)")
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
    else:
        defaults.append(f"ar.num_layers → layer + 1 = {layer + 1}")
    inj_scale = parse_scale(t.pop("extraction.injection_scale"), where, "extraction.injection_scale")
    mse = mse_scale(t, where, defaults)
    av_tmpl, ar_tmpl = templates(t, where)
    adapter, adapter_base = adapter_from_folder(folder)
    base = t.pop("base_checkpoint", t.pop("base_model")) or adapter_base
    if base is None and adapter["kind"] == "full" and folder is not None:
        base = ""  # the docs' minimal sidecars: full weights in the folder need no base to load
        defaults.append("base_model → none (no `base_checkpoint`; the folder holds full weights)")
    if base is None:
        raise MetaError(
            f"{where}: field `base_checkpoint` is required for an adapter checkpoint (the base it applies to)"
        )
    injection = {"scheme": "embedding_replace", **drop_none({"scale": inj_scale}), **marker_tokens(t)}
    if the_role == "av" and "marker" not in injection and "marker_token_id" not in injection:
        raise MetaError(f"{where}: an AV meta needs `tokens.injection_char` or `tokens.injection_token_id`")
    parent = t.pop("parent_checkpoints")  # the reference lists them; hubkit records the first
    parent = (parent or [None])[0] if isinstance(parent, list) else parent
    training = {
        "stage": t.pop("stage"),
        "lr": t.pop("training.lr"),
        "loss_type": t.pop("training.loss_type"),
        "global_batch_size": t.pop("training.global_batch_size"),
        "parent": None if parent is None else str(parent),
    }
    defaults.append("injection.scheme → embedding_replace")
    av, prompts = reference_prompts(av_tmpl, ar_tmpl, defaults)
    ar = {
        **prompts,
        "num_layers": None if layer is None else layer + 1,
        "head_format": head_format or "value_head",
        "head_bias": bool(head_bias),
        "suffix_ids": t.pop("tokens.critic_suffix_ids"),
    }
    out: dict[str, Any] = {
        "role": the_role,
        "base_model": base,
        "d_model": d_model,
        "layer": layer,
        "mse_scale": mse,
        "adapter": adapter,
        "injection": injection,
        "training": drop_none(training),
        "av": av,
        "ar": drop_none(ar),
    }
    trained_on = t.pop("trained_on")  # kept whole, even where it holds empty values
    out["legacy"] = {**t.leftovers(), **drop_none({"trained_on": trained_on})}
    return out, defaults


# -- the consumer-GPU release ---------------------------------------------------------------------------
def _is_consumer(d: dict[str, Any]) -> bool:
    return "av_lora" in d or ("base_model" in d and "extraction" in d and "kind" in d)


@register("consumer-gpu", priority=30, detect=_is_consumer)
def read_consumer(data: dict[str, Any], where: str, folder: Path | None) -> tuple[dict[str, Any], Defaults]:
    """``kind: nla_model``, a top-level ``base_model``, ``av_lora`` and a raw AV template."""
    t = Taker(data)
    defaults: Defaults = []
    kind = t.pop("kind")
    if kind != "nla_model":
        raise MetaError(f"{where}: field `kind` is {kind!r}; expected nla_model")
    the_role = role(t.pop("role", "actor"), where)
    d_model = t.pop("extraction.d_model", t.pop("d_model"))
    layer = t.pop("extraction.layer")
    if d_model is None or layer is None:
        raise MetaError(f"{where}: fields `extraction.d_model` and `extraction.layer` are required")
    inj_scale = parse_scale(t.pop("extraction.injection_scale"), where, "extraction.injection_scale")
    mse = mse_scale(t, where, defaults)
    lora = t.pop("av_lora") or {}
    modules = lora.get("target_modules_regex", lora.get("target_modules"))
    ar_meta = read_ar_meta_json(folder) if folder is not None and (folder / C.AR_META_JSON).exists() else {}
    n = ar_meta.get("ar_num_layers")
    if n is None:
        n = layer + 1
        defaults.append(f"ar.num_layers → layer + 1 = {n}")
    head_format, head_bias = folder_head(folder)
    out: dict[str, Any] = {
        "role": the_role,
        "base_model": t.pop("base_model"),
        "d_model": d_model,
        "layer": layer,
        "mse_scale": mse,
        "injection": {"scheme": "embedding_replace", **drop_none({"scale": inj_scale}), **marker_tokens(t)},
        "av": {"template": t.pop("prompt_template", DEFAULT_AV_TEMPLATE), "chat_template": False},
        "ar": {
            "num_layers": int(n),
            "template": DEFAULT_AR_TEMPLATE,
            "head_format": head_format or "ar_lora_value_head",
            "head_bias": bool(head_bias),
            "add_bos": True,
            "input_norm": "mse_scale",
        },
        "adapter": drop_none(
            {"kind": "lora", "r": lora.get("r"), "alpha": lora.get("alpha"), "target_modules": modules}
        ),
        "training": drop_none({"lr": t.pop("training.lr"), "step": t.pop("training.steps_completed")}),
    }
    defaults += ["injection.scheme → embedding_replace", "av.chat_template → false (raw template)"]
    return {**out, "legacy": t.leftovers()}, defaults


# -- the LoRA-AR layout ---------------------------------------------------------------------------------
def _width_from_head(folder: Path, where: str) -> int:
    head_file = folder / C.AR_LORA_HEAD_FILE
    if not head_file.exists():
        raise MetaError(f"{where}: no `d_model` and no {C.AR_LORA_HEAD_FILE} to read the width from")
    with safe_open(str(head_file), "pt") as f:
        key = next(k for k in f.keys() if k.endswith("weight") and "lora_" not in k)
        return int(f.get_slice(key).get_shape()[0])


@register("consumer-gpu-ar", priority=40, detect=lambda d: d.get(AR_META_JSON_KEY) is True)
def read_consumer_ar(
    data: dict[str, Any], where: str, folder: Path | None
) -> tuple[dict[str, Any], Defaults]:
    """``ar_meta.json`` + ``ar_lora_value_head.safetensors``, as asherps/EasyNLA ``nla/train_sft.py`` writes
    them (read by its ``scripts/show_nla_generations.load_ar_critic``, ``nla/utils/critic.critic_predict``).

    ``ar_meta.json`` holds ``ar_num_layers`` (K+1), ``lora_r``, ``lora_alpha``, ``quant``,
    ``target_modules`` and ``final_norm_stripped`` (false or absent: the base's final norm is applied to
    the read-out, which is normalised to ``mse_scale`` before the fp32 head); width, layer, base and
    templates come from the run's dataset sidecar copied beside it as ``nla_meta.yaml``, else the head file.
    """
    assert folder is not None
    ar_meta = read_ar_meta_json(folder)
    side = data.get(SIDECAR_KEY) if isinstance(data.get(SIDECAR_KEY), dict) else {}
    _, ar_tmpl = templates(Taker(side), where)
    ext = side.get("extraction") if isinstance(side.get("extraction"), dict) else {}
    tokens = side.get("tokens") if isinstance(side.get("tokens"), dict) else {}
    defaults: Defaults = []
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
    mse = parse_scale(ext.get("mse_scale", "sqrt_d_model"), where, "extraction.mse_scale")
    if "mse_scale" not in ext:
        defaults.append("mse_scale → sqrt_d_model (the writer's default)")
    head_format, head_bias = folder_head(folder)
    for name, key in (("r", "lora_r"), ("alpha", "lora_alpha"), ("target_modules", "target_modules")):
        adapter[name] = ar_meta.get(key, adapter.get(name))
    # the LoRA tensors live in the head file, not in an adapter_config.json
    adapter.update(kind="lora", rslora=bool(ar_meta.get("use_rslora", True)))
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
    ar = {
        "num_layers": int(n),
        "template": ar_tmpl or DEFAULT_AR_TEMPLATE,
        "head_format": head_format or "ar_lora_value_head",
        "head_bias": bool(head_bias),
        "add_bos": False,
        "input_norm": "mse_scale",
        "final_norm": not stripped,
        "suffix_ids": tokens.get("critic_suffix_ids"),
    }
    out: dict[str, Any] = {
        "role": "ar",
        "base_model": base,
        "d_model": d_model,
        "layer": int(n) - 1,
        "mse_scale": mse,
        "adapter": drop_none(adapter),
        "ar": drop_none(ar),
        "legacy": {"ar_meta_json": ar_meta},
    }
    injection = marker_tokens(Taker(tokens), prefix="")
    return {**out, "injection": injection} if injection else out, defaults


# -- the residual-add variant's dataset sidecar ---------------------------------------------------------
@register("residual-add-sidecar", priority=50, detect=lambda d: d.get("kind") == "nla_dataset")
def read_residual_sidecar(
    data: dict[str, Any], where: str, folder: Path | None
) -> tuple[dict[str, Any], Defaults]:
    """A dataset sidecar copied into the checkpoint: residual addition at block 1, role from the files."""
    t = Taker(data)
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
    the_role = "ar" if head_format else "av"
    layer = ext["layer_index"]
    if isinstance(layer, bool) or not isinstance(layer, int):
        raise MetaError(f"{where}: field `extraction.layer_index` must be an integer, got {layer!r}")
    # Reference sidecars also record the marker tokens and both prompt templates: use them.
    injection = {"scheme": "residual_add", "block": 1, **marker_tokens(t)}
    suffix = t.pop("tokens.critic_suffix_ids")
    av_tmpl, ar_tmpl = templates(t, where)
    defaults = ["injection.scheme → residual_add at block 1 (the sidecar does not record it)"]
    if "marker" not in injection and "marker_token_id" not in injection:
        defaults.append(
            "injection.marker → first single-token candidate of hubkit.injection.MARKER_CANDIDATES"
        )
    av, prompts = reference_prompts(av_tmpl, ar_tmpl, defaults)
    defaults += [f"role → {the_role} (from the files present)", "mse_scale → sqrt_d_model"]
    ar = {
        **prompts,
        "num_layers": layer + 1,
        "head_format": head_format or "linear_head_pt",
        "head_bias": True if head_bias is None else head_bias,
        "suffix_ids": suffix,
    }
    out = {
        "role": the_role,
        "base_model": base,
        "d_model": ext["d_model"],
        "layer": layer,
        "mse_scale": "sqrt_d_model",
        "adapter": drop_none(adapter),
        "injection": injection,
        "av": av,
        "ar": ar,
        "legacy": {"dataset_sidecar": {**t.leftovers(), "extraction": ext}},
    }
    return out, defaults


def read(data: dict[str, Any], where: str, folder: Path | None) -> tuple[Dialect, dict[str, Any], Defaults]:
    """The first dialect whose detector matches `data`, and what its reader made of it (`data` is popped)."""
    for dialect in ordered():
        if dialect.detect(data):
            return (dialect, *dialect.read(data, where, folder))
    raise MetaError(
        f"{where}: unrecognised nla_meta dialect (keys: {sorted(data)}); expected `schema: {C.SCHEMA_VERSION}`, "
        "a reference file (`schema_version: 2`), a consumer-GPU release file (`base_model` + `av_lora`), "
        "or a dataset sidecar (`kind: nla_dataset`)"
    )
