"""The sections of hubkit's NLA schema: every choice that changes what an NLA computes. No torch."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from hubkit import constants as C
from hubkit.errors import MetaError
from hubkit.registry import Registry

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


@dataclass(frozen=True)
class Scheme:
    """What a meta knows of an injection scheme (the code that applies it is in `hubkit.injection`)."""

    scaled: bool  # the vector is injected as ``v · scale / ‖v‖``, so an AV needs `injection.scale`


# The schemes a meta may name. The two published ones are data here, so reading a meta needs no torch;
# `hubkit.injection.register_scheme` adds the name of any scheme registered beyond them.
SCHEMES: Registry[Scheme] = Registry("injection scheme", hint="`injection.scheme` in nla_meta.yaml")
SCHEMES.add("embedding_replace", Scheme(scaled=True))
SCHEMES.add("residual_add", Scheme(scaled=False))


def check_scale(value: Scale | None, name: str) -> None:
    """Refuse a numeric scale that is not a positive finite number (sentinels and None pass)."""
    if isinstance(value, float) and not (math.isfinite(value) and value > 0):
        raise ValueError(f"`{name}` must be a positive finite number, got {value}")


@dataclass
class Injection:
    """How a vector enters the AV; ``scale`` is ``None`` only where no vector is injected with it."""

    scheme: str = field(default="embedding_replace", metadata={"choices": lambda: SCHEMES.names()})
    scale: Scale | None = None
    marker: str | None = None
    marker_token_id: int | None = None
    left_neighbor_id: int | None = None
    right_neighbor_id: int | None = None
    block: int = 1
    ood_allowed: bool = False

    def __post_init__(self) -> None:
        if self.scheme not in SCHEMES:
            raise ValueError(
                f"`injection.scheme` must be one of {list(SCHEMES.names())}, got {self.scheme!r}"
            )
        check_scale(self.scale, "injection.scale")
        if self.marker is not None and len(self.marker) == 0:
            raise ValueError("`injection.marker` must not be empty")
        if self.block < 0:
            raise ValueError(f"`injection.block` must be >= 0, got {self.block}")

    @property
    def needs_scale(self) -> bool:
        return SCHEMES.get(self.scheme).scaled


@dataclass
class AVSpec:
    """The AV prompt: its template (the marker placeholder once per vector) and whether it is chat-wrapped."""

    template: str = DEFAULT_AV_TEMPLATE
    chat_template: bool = True
    explanation_open: str = C.EXPLANATION_OPEN
    explanation_close: str = C.EXPLANATION_CLOSE

    def __post_init__(self) -> None:
        if self.template.count(MARKER_PLACEHOLDER) < 1:
            raise ValueError(
                f"`av.template` must hold the marker placeholder {MARKER_PLACEHOLDER} (once per vector), "
                f"found none in {self.template!r}"
            )


@dataclass
class ARSpec:
    """The AR: prompt, kept blocks (K+1; ``None`` only on a layerless AV), head, BOS and input norm."""

    num_layers: int | None = None
    template: str = DEFAULT_AR_TEMPLATE
    head_format: HeadFormat = "value_head"
    head_bias: bool = False
    # True: BOS forced first; "tokenizer": BOS only where the tokenizer adds one; False: the prompt is
    # tokenized without special tokens (the LoRA-AR writer's `add_special_tokens=False`)
    add_bos: bool | Literal["tokenizer"] = True
    input_norm: Literal["none", "mse_scale"] = "none"
    chat_template: bool = False
    suffix_ids: list[int] | None = None
    final_norm: bool = False  # the base's final norm applied to the read-out (a LoRA-AR kept it)

    def __post_init__(self) -> None:
        if self.template.count(EXPLANATION_PLACEHOLDER) != 1:
            raise ValueError(
                f"`ar.template` must hold {EXPLANATION_PLACEHOLDER} exactly once, found "
                f"{self.template.count(EXPLANATION_PLACEHOLDER)} in {self.template!r}"
            )
        if self.num_layers is not None and self.num_layers < 1:
            raise ValueError(f"`ar.num_layers` must be >= 1, got {self.num_layers}")


@dataclass
class Adapter:
    """How the weights relate to the base: a LoRA adapter (optionally over a 4-bit base) or full weights."""

    kind: Literal["lora", "full"] = "lora"
    r: int | None = None
    alpha: float | None = None
    target_modules: list[str] | str | None = None
    quant: Literal["none", "nf4", "int8"] = "none"
    rslora: bool = False  # rank-stabilised LoRA: scaling alpha/sqrt(r) instead of alpha/r


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


def resolve_scale(scale: Scale | None, d_model: int) -> float | None:
    """A scale field as a number: ``sqrt_d_model`` → sqrt(d); ``raw``/``None`` → ``None`` (no rescale)."""
    if scale is None or scale == "raw":
        return None
    if scale == "sqrt_d_model":
        return math.sqrt(d_model)
    return float(scale)


def parse_scale(value: Any, where: str, name: str) -> Any:
    """A scale as stored in the schema: a float, ``sqrt_d_model``, ``raw`` or None (numeric strings → float)."""
    if value is None or value in ("sqrt_d_model", "raw"):
        return value
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise MetaError(f"{where}: field `{name}` must be a number, 'sqrt_d_model', 'raw' or null; got {value!r}")


def critic_suffix_ids(tokenizer: Any, template: str) -> list[int]:
    """The AR template's text after ``{explanation}`` tokenized alone, less its first (merging) token."""
    suffix = template.split(EXPLANATION_PLACEHOLDER, 1)[1]
    ids = list(tokenizer(suffix, add_special_tokens=False)["input_ids"])
    if len(ids) < 2:
        raise MetaError(
            f"the AR template's suffix {suffix!r} is {len(ids)} token(s); `critic_suffix_ids` drops the first, "
            "so it needs at least 2: lengthen the text after {explanation}"
        )
    return ids[1:]
