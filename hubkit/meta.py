"""`NLAMeta`: hubkit's versioned NLA schema, and readers for the published dialects.

Every choice that changes what an NLA computes is a field here (injection scheme and scale,
marker and neighbour ids, chat template on/off, layer, width, AR kept blocks, head format and
bias, AR BOS and input normalisation, ``mse_scale``, prompt templates, base model, adapter).
Older dialects are mapped onto it by one reader each (a registry, not an ``if`` chain); the
defaults a reader fills in are logged once, never guessed silently.
"""

from __future__ import annotations

import copy
import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import yaml

from hubkit import constants as C
from hubkit.errors import MetaError
from hubkit.schema import SchemaError, from_dict, to_dict

log = logging.getLogger(__name__)

Scale = float | Literal["sqrt_d_model", "raw"]
Role = Literal["av", "ar"]
HeadFormat = Literal["value_head", "linear_head_pt", "ar_lora_value_head"]

MARKER_PLACEHOLDER = "{injection_char}"
EXPLANATION_PLACEHOLDER = "{explanation}"

# Documented defaults used when a dialect does not record a value.
DEFAULT_AV_TEMPLATE = (
    "Here is an activation vector: " + MARKER_PLACEHOLDER + "\n"
    "Explain what it encodes inside <explanation></explanation> tags."
)
DEFAULT_AR_TEMPLATE = "Summary of the following text: <text>" + EXPLANATION_PLACEHOLDER + "</text> <summary>"

ROLE_ALIASES = {"av": "av", "actor": "av", "ar": "ar", "critic": "ar"}


@dataclass
class Injection:
    """How a vector enters the AV: which scheme, how scaled, and at which marker token."""

    scheme: Literal["embedding_replace", "residual_add"] = "embedding_replace"
    scale: Scale | None = None
    marker: str | None = None
    marker_token_id: int | None = None
    left_neighbor_id: int | None = None
    right_neighbor_id: int | None = None
    block: int = 1
    ood_allowed: bool = False

    def __post_init__(self) -> None:
        if self.scheme == "embedding_replace" and self.scale is None:
            raise ValueError(
                "`injection.scale` is required for embedding_replace (a number, sqrt_d_model or raw)"
            )
        if isinstance(self.scale, float) and not (math.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"`injection.scale` must be a positive finite number, got {self.scale}")
        if self.marker is not None and len(self.marker) == 0:
            raise ValueError("`injection.marker` must not be empty")
        if self.block < 0:
            raise ValueError(f"`injection.block` must be >= 0, got {self.block}")


@dataclass
class AVSpec:
    """The AV prompt: its template (holding the marker placeholder) and whether it is chat-wrapped."""

    template: str = DEFAULT_AV_TEMPLATE
    chat_template: bool = True
    explanation_open: str = C.EXPLANATION_OPEN
    explanation_close: str = C.EXPLANATION_CLOSE

    def __post_init__(self) -> None:
        if self.template.count(MARKER_PLACEHOLDER) != 1:
            raise ValueError(
                f"`av.template` must hold the marker placeholder {MARKER_PLACEHOLDER} exactly once, "
                f"found {self.template.count(MARKER_PLACEHOLDER)} in {self.template!r}"
            )


@dataclass
class ARSpec:
    """The AR: prompt, kept blocks (K+1), head file format, BOS and input normalisation."""

    num_layers: int
    template: str = DEFAULT_AR_TEMPLATE
    head_format: HeadFormat = "value_head"
    head_bias: bool = False
    add_bos: bool = True
    input_norm: Literal["none", "mse_scale"] = "none"
    chat_template: bool = False
    suffix_ids: list[int] | None = None

    def __post_init__(self) -> None:
        if self.template.count(EXPLANATION_PLACEHOLDER) != 1:
            raise ValueError(
                f"`ar.template` must hold {EXPLANATION_PLACEHOLDER} exactly once, found "
                f"{self.template.count(EXPLANATION_PLACEHOLDER)} in {self.template!r}"
            )
        if self.num_layers < 1:
            raise ValueError(f"`ar.num_layers` must be >= 1, got {self.num_layers}")


@dataclass
class Adapter:
    """How the weights relate to the base: a LoRA adapter (optionally over a 4-bit base) or full weights."""

    kind: Literal["lora", "full"] = "lora"
    r: int | None = None
    alpha: float | None = None
    target_modules: list[str] | str | None = None
    quant: Literal["none", "nf4", "int8"] = "none"


@dataclass
class Training:
    """Where a checkpoint sits in its run (every field optional: published metas record few)."""

    stage: str | None = None
    step: int | None = None
    loss: float | None = None
    lr: float | None = None
    tokens_seen: int | None = None
    seed: int | None = None
    data_sha256: str | None = None
    parent: str | None = None
    loss_type: str | None = None
    global_batch_size: int | None = None
    config_sha256: str | None = None
    dtype: str | None = None  # precision the weights were trained in (resolved, never "auto")


@dataclass
class Retraction:
    reason: str


@dataclass
class NLAMeta:
    """One half of an NLA, described completely. Load any dialect; save hubkit's own."""

    role: Role
    base_model: str
    d_model: int
    layer: int
    injection: Injection | None = None
    av: AVSpec | None = None
    ar: ARSpec | None = None
    mse_scale: Scale = "sqrt_d_model"
    base_revision: str | None = None
    adapter: Adapter = field(default_factory=Adapter)
    training: Training = field(default_factory=Training)
    retracted: Retraction | None = None
    converted_from: str | None = None
    legacy: dict[str, Any] = field(default_factory=dict)
    schema: str = C.SCHEMA_VERSION

    def __post_init__(self) -> None:
        self.role = ROLE_ALIASES.get(self.role, self.role)  # type: ignore[assignment]
        if self.schema != C.SCHEMA_VERSION:
            raise ValueError(f"`schema` must be {C.SCHEMA_VERSION!r}, got {self.schema!r}")
        if self.d_model < 1:
            raise ValueError(f"`d_model` must be >= 1, got {self.d_model}")
        if self.layer < 0:
            raise ValueError(f"`layer` must be >= 0, got {self.layer}")
        if self.role == "av" and (self.injection is None or self.av is None):
            raise ValueError("an AV meta needs both `injection` and `av` sections")
        if self.role == "ar" and self.ar is None:
            raise ValueError("an AR meta needs an `ar` section")
        if isinstance(self.mse_scale, float) and not (math.isfinite(self.mse_scale) and self.mse_scale > 0):
            raise ValueError(f"`mse_scale` must be a positive number, got {self.mse_scale}")

    # -- resolved numbers -------------------------------------------------------------------
    def mse_scale_value(self) -> float:
        return resolve_scale(self.mse_scale, self.d_model) or 1.0

    def injection_scale_value(self) -> float | None:
        """The embedding-replacement norm, or ``None`` for raw vectors / residual addition."""
        if self.injection is None or self.injection.scheme != "embedding_replace":
            return None
        return resolve_scale(self.injection.scale, self.d_model)

    # -- io -----------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        data = to_dict(self)
        data.pop("legacy", None) if not self.legacy else None
        return {"schema": data.pop("schema"), **data}

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        if path.is_dir() or path.suffix == "":
            path = path / C.META_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True))
        tmp.replace(path)
        return path

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "<dict>") -> NLAMeta:
        """Read any dialect from a parsed mapping (no file inspection)."""
        return _read(data, where, folder=None)

    @classmethod
    def load(cls, path: str | Path) -> NLAMeta:
        """Read `path` (an ``nla_meta.yaml`` or a checkpoint folder) in any known dialect."""
        path = Path(path)
        folder = path if path.is_dir() else path.parent
        meta_file = path / C.META_FILE if path.is_dir() else path
        if meta_file.exists():
            try:
                data = yaml.safe_load(meta_file.read_text())
            except yaml.YAMLError as exc:
                raise MetaError(f"{meta_file}: not valid YAML ({exc})") from exc
            return _read(data, str(meta_file), folder)
        if (folder / C.AR_META_JSON).exists():
            return _read({"__ar_meta_json__": True}, str(folder / C.AR_META_JSON), folder)
        raise MetaError(
            f"{path}: no {C.META_FILE} (nor {C.AR_META_JSON}) found; point at an NLA checkpoint folder "
            "or its nla_meta.yaml"
        )

    def with_updates(self, **changes: Any) -> NLAMeta:
        return replace(self, **changes)


def resolve_scale(scale: Scale | None, d_model: int) -> float | None:
    """A scale field as a number: ``sqrt_d_model`` → sqrt(d); ``raw``/``None`` → ``None`` (no rescale)."""
    if scale is None or scale == "raw":
        return None
    if scale == "sqrt_d_model":
        return math.sqrt(d_model)
    return float(scale)


# ---------------------------------------------------------------------------------------------
# Dialect readers: each takes the parsed mapping and returns a dict in hubkit's schema plus the
# list of defaults it applied.
# ---------------------------------------------------------------------------------------------
Reader = Callable[[dict[str, Any], str, "Path | None"], tuple[dict[str, Any], list[str]]]
_DETECTORS: list[tuple[str, Callable[[dict[str, Any]], bool], Reader]] = []


def dialect(name: str, detect: Callable[[dict[str, Any]], bool]) -> Callable[[Reader], Reader]:
    """Register a reader for one published dialect (first matching detector wins)."""

    def wrap(fn: Reader) -> Reader:
        _DETECTORS.append((name, detect, fn))
        return fn

    return wrap


def _read(data: Any, where: str, folder: Path | None) -> NLAMeta:
    if not isinstance(data, dict):
        raise MetaError(f"{where}: expected a mapping at the top level, got {type(data).__name__}")
    data = copy.deepcopy(data)  # readers pop fields, nested ones included: never touch the caller's mapping
    for name, detect, reader in _DETECTORS:
        if detect(data):
            converted, defaults = reader(data, where, folder)
            if name != "hubkit":
                converted["converted_from"] = name
                log.info(
                    "%s: read %s dialect into %s; defaults applied: %s",
                    where,
                    name,
                    C.SCHEMA_VERSION,
                    "; ".join(defaults) or "none",
                )
            try:
                return from_dict(NLAMeta, converted, where)
            except SchemaError as exc:
                raise MetaError(str(exc)) from exc
    raise MetaError(
        f"{where}: unrecognised nla_meta dialect (keys: {sorted(data)}); expected `schema: {C.SCHEMA_VERSION}`, "
        "a reference file (`schema_version: 2`), a consumer-GPU release file (`base_model` + `av_lora`), "
        "or a dataset sidecar (`kind: nla_dataset`)"
    )


@dialect("hubkit", lambda d: str(d.get("schema", "")).startswith("hubkit.nla/"))
def _read_hubkit(data: dict[str, Any], where: str, folder: Path | None) -> tuple[dict[str, Any], list[str]]:
    if data["schema"] != C.SCHEMA_VERSION:
        raise MetaError(
            f"{where}: field `schema` is {data['schema']!r}; this hubkit reads {C.SCHEMA_VERSION!r}"
        )
    return data, []


class _Taker:
    """Pops fields from a legacy mapping; whatever is left over is reported or kept as `legacy`."""

    def __init__(self, data: dict[str, Any], where: str) -> None:
        self.data, self.where = data, where

    def pop(self, dotted: str, default: Any = None) -> Any:
        *parents, last = dotted.split(".")
        node = self.data
        for p in parents:
            node = node.get(p) if isinstance(node, dict) else None
            if node is None:
                return default
        if not isinstance(node, dict) or last not in node:
            return default
        value = node.pop(last)
        return value

    def leftovers(self) -> dict[str, Any]:
        def prune(d: Any) -> Any:
            if isinstance(d, dict):
                out = {k: prune(v) for k, v in d.items()}
                return {k: v for k, v in out.items() if v not in ({}, None)}
            return d

        return prune(self.data)


def _role(value: Any, where: str) -> str:
    if value not in ROLE_ALIASES:
        raise MetaError(f"{where}: field `role` must be one of {sorted(ROLE_ALIASES)}, got {value!r}")
    return ROLE_ALIASES[value]


def _scale(value: Any, where: str, name: str) -> Any:
    if value is None or value in ("sqrt_d_model", "raw"):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise MetaError(f"{where}: field `{name}` must be a number, 'sqrt_d_model', 'raw' or null; got {value!r}")


def _ar_num_layers(t: _Taker, where: str) -> int | None:
    """The four published spellings of the AR depth, as kept blocks (K+1); they must agree."""
    found: dict[str, int] = {}
    for key, offset in (
        ("critic.extraction_layer_index", 1),
        ("extraction_layer_index", 1),
        ("critic.num_hidden_layers", 0),
        ("ar.num_hidden_layers", 0),
    ):
        v = t.pop(key)
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, int):
            raise MetaError(f"{where}: field `{key}` must be an integer, got {v!r}")
        found[key] = v + offset
    if len(set(found.values())) > 1:
        raise MetaError(f"{where}: contradictory AR depth fields (as kept blocks): {found}; keep one")
    return next(iter(found.values()), None)


def _folder_head(folder: Path | None) -> tuple[str | None, bool | None]:
    """Inspect a checkpoint folder for the AR head file and whether it carries a bias."""
    if folder is None:
        return None, None
    if (folder / C.VALUE_HEAD_FILE).exists():
        return "value_head", _safetensors_has_bias(folder / C.VALUE_HEAD_FILE)
    if (folder / C.AR_LORA_HEAD_FILE).exists():
        return "ar_lora_value_head", _safetensors_has_bias(folder / C.AR_LORA_HEAD_FILE)
    if (folder / C.LINEAR_HEAD_PT_FILE).exists():
        return "linear_head_pt", True
    return None, None


def _safetensors_has_bias(path: Path) -> bool:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        return any(k.endswith("bias") for k in f.keys())


def _adapter_from_folder(folder: Path | None) -> tuple[dict[str, Any], str | None]:
    if folder is None or not (folder / C.ADAPTER_CONFIG_FILE).exists():
        return {"kind": "full"}, None
    cfg = json.loads((folder / C.ADAPTER_CONFIG_FILE).read_text())
    tm = cfg.get("target_modules")
    return (
        {
            "kind": "lora",
            "r": cfg.get("r"),
            "alpha": cfg.get("lora_alpha"),
            "target_modules": sorted(tm) if isinstance(tm, (list, set)) else tm,
        },
        cfg.get("base_model_name_or_path"),
    )


def _templates(t: _Taker, where: str) -> tuple[str | None, str | None]:
    """(AV, AR) templates from `prompt_templates` (`av`/`actor`, `ar`/`critic`), each checked for its placeholder."""
    templates = t.pop("prompt_templates") or {}
    if not isinstance(templates, dict):
        raise MetaError(f"{where}: field `prompt_templates` must be a mapping, got {templates!r}")
    out: list[str | None] = []
    for names, placeholder in (
        (("av", "actor"), MARKER_PLACEHOLDER),
        (("ar", "critic"), EXPLANATION_PLACEHOLDER),
    ):
        found = {n: templates.pop(n) for n in names if n in templates}
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
    if templates:
        raise MetaError(f"{where}: unknown field(s) under `prompt_templates`: {sorted(templates)}")
    return out[0], out[1]


def _is_reference_model(d: dict[str, Any]) -> bool:
    # Reference dataset sidecars carry `schema_version` and `prompt_templates` too: they are the
    # residual-add variant's meta and go to that reader.
    return d.get("kind") != "nla_dataset" and (d.get("schema_version") == 2 or "prompt_templates" in d)


@dialect("reference-v2", _is_reference_model)
def _read_reference(
    data: dict[str, Any], where: str, folder: Path | None
) -> tuple[dict[str, Any], list[str]]:
    t = _Taker(data, where)
    defaults: list[str] = []
    t.pop("schema_version")
    kind = t.pop("kind")
    if kind not in (None, "nla_model"):
        raise MetaError(f"{where}: field `kind` is {kind!r}; a model meta has `kind: nla_model`")
    role = _role(t.pop("role"), where)
    d_model = t.pop("d_model")
    if d_model is None:
        raise MetaError(f"{where}: field `d_model` is required but missing")
    num_layers = _ar_num_layers(t, where)
    layer = t.pop("extraction.layer_index", t.pop("extraction.layer"))
    if layer is None:
        if num_layers is None:
            raise MetaError(
                f"{where}: no layer: expected `critic.extraction_layer_index` (or `critic.num_hidden_layers`, "
                "`ar.num_hidden_layers`, `extraction_layer_index`)"
            )
        layer = num_layers - 1
    inj_scale = _scale(t.pop("extraction.injection_scale"), where, "extraction.injection_scale")
    mse_scale = _scale(t.pop("extraction.mse_scale"), where, "extraction.mse_scale")
    if inj_scale is None:
        inj_scale = "raw"
        defaults.append("extraction.injection_scale null → raw (vector injected unscaled)")
    if mse_scale is None:
        defaults.append("extraction.mse_scale null → sqrt_d_model")
        mse_scale = "sqrt_d_model"
    av_tmpl, ar_tmpl = _templates(t, where)
    base = t.pop("base_checkpoint", t.pop("base_model"))
    adapter, adapter_base = _adapter_from_folder(folder)
    base = base or adapter_base
    if base is None:
        raise MetaError(f"{where}: field `base_checkpoint` is required but missing")
    head_format, head_bias = _folder_head(folder)
    out: dict[str, Any] = {
        "role": role,
        "base_model": base,
        "d_model": d_model,
        "layer": layer,
        "mse_scale": mse_scale,
        "adapter": adapter,
        "injection": {
            "scheme": "embedding_replace",
            "scale": inj_scale,
            "marker": t.pop("tokens.injection_char"),
            "marker_token_id": t.pop("tokens.injection_token_id"),
            "left_neighbor_id": t.pop("tokens.injection_left_neighbor_id"),
            "right_neighbor_id": t.pop("tokens.injection_right_neighbor_id"),
        },
        "training": {
            "stage": t.pop("stage"),
            "lr": t.pop("training.lr"),
            "loss_type": t.pop("training.loss_type"),
            "global_batch_size": t.pop("training.global_batch_size"),
            "parent": _first(t.pop("parent_checkpoints")),
        },
    }
    defaults.append("injection.scheme → embedding_replace")
    if av_tmpl is None:
        defaults.append("av.template → hubkit default")
    out["av"] = {"template": av_tmpl or DEFAULT_AV_TEMPLATE, "chat_template": True}
    defaults.append("av.chat_template → true")
    suffix = t.pop("tokens.critic_suffix_ids")
    if num_layers is None:
        num_layers = layer + 1
        defaults.append(f"ar.num_layers → layer + 1 = {num_layers}")
    out["ar"] = {
        "num_layers": num_layers,
        "template": ar_tmpl or DEFAULT_AR_TEMPLATE,
        "head_format": head_format or "value_head",
        "head_bias": bool(head_bias),
        "add_bos": True,
        "input_norm": "none",
        "suffix_ids": suffix,
    }
    defaults.append("ar.add_bos → true, ar.input_norm → none")
    if role == "av" and out["injection"]["marker"] is None and out["injection"]["marker_token_id"] is None:
        raise MetaError(f"{where}: an AV meta needs `tokens.injection_char` or `tokens.injection_token_id`")
    out["injection"] = {k: v for k, v in out["injection"].items() if v is not None}
    out["training"] = {k: v for k, v in out["training"].items() if v is not None}
    trained_on = t.pop("trained_on")
    legacy = t.leftovers()
    if trained_on is not None:
        legacy["trained_on"] = trained_on
    if legacy:
        out["legacy"] = legacy
    return out, defaults


def _first(value: Any) -> Any:
    if isinstance(value, list):
        return str(value[0]) if value else None
    return None if value is None else str(value)


@dialect(
    "consumer-gpu", lambda d: "av_lora" in d or ("base_model" in d and "extraction" in d and "kind" in d)
)
def _read_consumer(data: dict[str, Any], where: str, folder: Path | None) -> tuple[dict[str, Any], list[str]]:
    t = _Taker(data, where)
    defaults: list[str] = []
    kind = t.pop("kind")
    if kind != "nla_model":
        raise MetaError(f"{where}: field `kind` is {kind!r}; expected nla_model")
    role = _role(t.pop("role", "actor"), where)
    d_model = t.pop("extraction.d_model", t.pop("d_model"))
    layer = t.pop("extraction.layer")
    if d_model is None or layer is None:
        raise MetaError(f"{where}: fields `extraction.d_model` and `extraction.layer` are required")
    inj_scale = _scale(t.pop("extraction.injection_scale"), where, "extraction.injection_scale")
    mse_scale = _scale(t.pop("extraction.mse_scale"), where, "extraction.mse_scale") or "sqrt_d_model"
    if inj_scale is None:
        inj_scale = "raw"
        defaults.append("extraction.injection_scale null → raw")
    lora = t.pop("av_lora") or {}
    out: dict[str, Any] = {
        "role": role,
        "base_model": t.pop("base_model"),
        "d_model": d_model,
        "layer": layer,
        "mse_scale": mse_scale,
        "injection": {
            "scheme": "embedding_replace",
            "scale": inj_scale,
            "marker_token_id": t.pop("tokens.injection_token_id"),
            "left_neighbor_id": t.pop("tokens.injection_left_neighbor_id"),
            "right_neighbor_id": t.pop("tokens.injection_right_neighbor_id"),
        },
        "av": {"template": t.pop("prompt_template", DEFAULT_AV_TEMPLATE), "chat_template": False},
        "ar": _consumer_ar(folder, layer, defaults),
        "adapter": {
            "kind": "lora",
            "r": lora.pop("r", None),
            "alpha": lora.pop("alpha", None),
            "target_modules": lora.pop("target_modules_regex", lora.pop("target_modules", None)),
        },
        "training": {"lr": t.pop("training.lr"), "step": t.pop("training.steps_completed")},
    }
    defaults += ["injection.scheme → embedding_replace", "av.chat_template → false (raw template)"]
    out["injection"] = {k: v for k, v in out["injection"].items() if v is not None}
    out["adapter"] = {k: v for k, v in out["adapter"].items() if v is not None}
    out["training"] = {k: v for k, v in out["training"].items() if v is not None}
    legacy = t.leftovers()
    if legacy:
        out["legacy"] = legacy
    return out, defaults


def _consumer_ar(folder: Path | None, layer: int, defaults: list[str]) -> dict[str, Any]:
    ar_meta: dict[str, Any] = {}
    if folder is not None and (folder / C.AR_META_JSON).exists():
        ar_meta = json.loads((folder / C.AR_META_JSON).read_text())
    n = ar_meta.get("ar_num_layers")
    if n is None:
        n = layer + 1
        defaults.append(f"ar.num_layers → layer + 1 = {n}")
    head_format, head_bias = _folder_head(folder)
    return {
        "num_layers": int(n),
        "template": DEFAULT_AR_TEMPLATE,
        "head_format": head_format or "ar_lora_value_head",
        "head_bias": bool(head_bias),
        "add_bos": True,
        "input_norm": "mse_scale",
    }


@dialect("consumer-gpu-ar", lambda d: d.get("__ar_meta_json__") is True)
def _read_consumer_ar(
    data: dict[str, Any], where: str, folder: Path | None
) -> tuple[dict[str, Any], list[str]]:
    assert folder is not None
    ar_meta = json.loads((folder / C.AR_META_JSON).read_text())
    adapter, base = _adapter_from_folder(folder)
    base = ar_meta.get("base_model", base)
    if base is None:
        raise MetaError(
            f"{where}: no base model: neither `base_model` here nor an adapter_config.json beside it"
        )
    d_model = ar_meta.get("d_model")
    if d_model is None:
        head_file = folder / C.AR_LORA_HEAD_FILE
        if not head_file.exists():
            raise MetaError(f"{where}: no `d_model` and no {C.AR_LORA_HEAD_FILE} to read the width from")
        from safetensors import safe_open

        with safe_open(str(head_file), "pt") as f:
            key = next(k for k in f.keys() if k.endswith("weight") and "lora_" not in k)
            d_model = int(f.get_slice(key).get_shape()[0])
    n = ar_meta.get("ar_num_layers")
    if n is None:
        raise MetaError(f"{where}: field `ar_num_layers` is required but missing")
    defaults: list[str] = ["ar.template → hubkit default", "ar.add_bos → true", "mse_scale → sqrt_d_model"]
    head_format, head_bias = _folder_head(folder)
    if ar_meta.get("lora_r") is not None:
        adapter["kind"] = "lora"  # the LoRA tensors live in the head file, not in an adapter_config.json
        adapter["r"] = ar_meta["lora_r"]
    if ar_meta.get("lora_alpha") is not None:
        adapter["alpha"] = ar_meta["lora_alpha"]
    if ar_meta.get("target_modules") is not None:
        adapter["target_modules"] = ar_meta["target_modules"]
    quants = {None: "none", "none": "none", "4bit": "nf4", "nf4": "nf4", "8bit": "int8", "int8": "int8"}
    quant = ar_meta.get("quant")
    if quant not in quants:
        raise MetaError(
            f"{where}: field `quant` is {quant!r}; expected one of {sorted(k for k in quants if k)} or null"
        )
    adapter["quant"] = quants[quant]
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


@dialect("residual-add-sidecar", lambda d: d.get("kind") == "nla_dataset")
def _read_residual_sidecar(
    data: dict[str, Any], where: str, folder: Path | None
) -> tuple[dict[str, Any], list[str]]:
    t = _Taker(data, where)
    t.pop("kind")
    ext = t.pop("extraction") or {}
    missing = [k for k in ("d_model", "layer_index") if k not in ext]
    if missing:
        raise MetaError(f"{where}: field `extraction.{missing[0]}` is required but missing")
    adapter, adapter_base = _adapter_from_folder(folder)
    base = ext.get("base_model") or adapter_base
    if base is None:
        raise MetaError(f"{where}: field `extraction.base_model` is required but missing")
    head_format, head_bias = _folder_head(folder)
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
    av_tmpl, ar_tmpl = _templates(t, where)
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
        "ar.add_bos → true, ar.input_norm → none",
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
                "add_bos": True,
                "input_norm": "none",
                "suffix_ids": suffix,
            },
            "legacy": legacy,
        },
        defaults,
    )


def check_compatible(av: NLAMeta, ar: NLAMeta) -> None:
    """Refuse an AV and an AR that cannot form a pair (width, layer or base model differ)."""
    from hubkit.errors import IncompatiblePairError

    problems = []
    if av.d_model != ar.d_model:
        problems.append(f"d_model: AV {av.d_model} vs AR {ar.d_model}")
    if av.layer != ar.layer:
        problems.append(f"layer: AV {av.layer} vs AR {ar.layer}")
    if _base_key(av.base_model) != _base_key(ar.base_model):
        problems.append(f"base_model: AV {av.base_model!r} vs AR {ar.base_model!r}")
    if problems:
        raise IncompatiblePairError(
            "the AV and AR do not form a pair: "
            + "; ".join(problems)
            + ". Load the two halves trained together."
        )


def _base_key(name: str) -> str:
    """One key per base model: registry names and the Hub ids they stand for compare equal."""
    if not name:
        return name
    try:
        from hubkit import models

        return models.get_spec(name).name
    except (ImportError, LookupError):
        return name.rstrip("/").split("/")[-1].lower()
