"""Training recipes: one typed YAML file per base model and layer, read strictly (unknown keys are errors
naming the field). Every field carries its help text in ``metadata["help"]`` (PEFT style), which
`hubkit train --help-recipe` prints."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import operator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from hubkit.engines import EngineError, normalise
from hubkit.errors import HubkitError
from hubkit.schema import SchemaError, from_dict, to_dict

Stage = Literal["av", "ar", "grpo"]
# the names scale_lint.resolve_recipe_scale measures
RecipeScale = float | Literal["sqrt_d_model", "raw", "embedding_norm", "activation_norm"]


class RecipeError(HubkitError, ValueError):
    """A recipe file that is missing, not YAML, or has an unknown, missing or mistyped field."""


_BOUNDS = {
    "gt": (">", operator.gt),
    "ge": (">=", operator.ge),
    "lt": ("<", operator.lt),
    "le": ("<=", operator.le),
}
FLOAT32_MAX = 3.4028234663852886e38


def _help(text: str, **kw: Any) -> Any:
    """A field with its help text and, for numbers, the range (`gt`, `ge`, `lt`, `le`) `check_values` enforces."""
    bounds = {k: kw.pop(k) for k in _BOUNDS if k in kw}
    return field(metadata={"help": text, "bounds": bounds}, **kw)


def _out_of_range(value: float, bounds: dict[str, float]) -> str | None:
    """What `value` breaks (non-finite, or a bound), or None when it is acceptable (always finite)."""
    wanted = " and ".join(f"{_BOUNDS[k][0]} {v:g}" for k, v in bounds.items())
    need = f"{'an integer' if isinstance(value, int) else 'a finite number'}{' ' + wanted if wanted else ''}"
    if not math.isfinite(value):
        return need
    if abs(value) > FLOAT32_MAX:  # torch turns hyper-parameters into fp32 tensors
        return f"{need}, within float32 range (|x| <= 3.4e38)"
    return None if all(_BOUNDS[k][1](value, b) for k, b in bounds.items()) else need


def check_values(obj: Any, prefix: str = "") -> None:
    """Every number of a recipe finite and inside its field's declared range; raises `ValueError` naming
    the dotted field (``av.optim.lr``)."""
    for f in dataclasses.fields(obj):
        value, name = getattr(obj, f.name), prefix + f.name
        if dataclasses.is_dataclass(value):
            check_values(value, name + ".")
            continue
        bounds = f.metadata.get("bounds", {})
        for i, v in enumerate(value) if isinstance(value, list) else [(None, value)]:
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                continue
            if problem := _out_of_range(v, bounds):
                where = name if i is None else f"{name}[{i}]"
                raise ValueError(f"field `{where}` must be {problem}, got {v!r}")


@dataclass
class AdapterRecipe:
    """What is trained: a LoRA over the base, a LoRA over a 4-bit NF4 base (QLoRA), or all weights."""

    kind: Literal["lora", "qlora", "full"] = _help(
        "lora, qlora (NF4 4-bit base) or full fine-tuning", default="lora"
    )
    r: int = _help("LoRA rank", default=16, ge=1)
    alpha: float = _help("LoRA alpha (scaling = alpha / r)", default=32.0, gt=0)
    dropout: float = _help("LoRA dropout", default=0.0, ge=0, lt=1)
    target_modules: list[str] | str = _help(
        "modules the LoRA wraps: a list of names, a regex, or `all-linear`", default="all-linear"
    )


@dataclass
class OptimRecipe:
    """Optimiser and learning-rate schedule."""

    lr: float = _help("peak learning rate", default=1e-4, gt=0)
    optimizer: Literal["adamw", "adamw_8bit"] = _help(
        "adamw (torch) or adamw_8bit (bitsandbytes 8-bit states, for small GPUs)", default="adamw"
    )
    weight_decay: float = _help("decoupled weight decay", default=0.0, ge=0)
    betas: list[float] = _help("Adam betas", default_factory=lambda: [0.9, 0.999], ge=0, lt=1)
    eps: float = _help("Adam epsilon", default=1e-8, gt=0)
    schedule: Literal["constant", "linear", "cosine"] = _help("decay after warm-up", default="constant")
    warmup_steps: int = _help("linear warm-up steps", default=0, ge=0)
    max_grad_norm: float | None = _help(
        "clip the global gradient norm (null: no clipping)", default=1.0, gt=0
    )

    def __post_init__(self) -> None:
        if len(self.betas) != 2:
            raise ValueError(f"`optim.betas` must be two numbers, got {self.betas}")


@dataclass
class NLARecipe:
    """What the NLA computes: written into every checkpoint's nla_meta.yaml."""

    injection_scheme: Literal["embedding_replace", "residual_add"] = _help(
        "embedding_replace (marker embedding := v·s/‖v‖) or residual_add (norm-matched, at `injection_block`)",
        default="embedding_replace",
    )
    injection_scale: RecipeScale | None = _help(
        "a number, sqrt_d_model, raw, or embedding_norm (the base's median token-embedding norm, measured)",
        default="embedding_norm",
        gt=0,
    )
    injection_block: int = _help("decoder block whose output receives residual_add", default=1, ge=0)
    marker: str | None = _help("marker character (null: the first one-token candidate)", default=None)
    av_template: str | None = _help("AV prompt holding {injection_char} (null: hubkit default)", default=None)
    chat_template: bool | None = _help(
        "wrap the AV prompt in the chat template (null: when the tokenizer has one)", default=None
    )
    ar_template: str | None = _help("AR prompt holding {explanation} (null: hubkit default)", default=None)
    ar_num_layers: int | None = _help("AR kept blocks K+1 (null: layer + 1)", default=None, ge=1)
    mse_scale: float | Literal["sqrt_d_model"] = _help(
        "norm both vectors are scaled to for MSE", default="sqrt_d_model", gt=0
    )
    ar_add_bos: bool = _help("prepend BOS to the AR prompt", default=True)
    ar_input_norm: Literal["none", "mse_scale"] = _help(
        "normalise the AR backbone output before the head", default="none"
    )


@dataclass
class StageRecipe:
    """Fields every stage shares: data, batch, steps, checkpoints, adapter and optimiser."""

    data: str | None = _help("input parquet (null: must be given with --data)", default=None)
    steps: int = _help("optimiser steps", default=100, ge=1)
    micro_batch_size: int = _help("rows per forward (per process)", default=4, ge=1)
    grad_accum: int = _help("micro-batches per optimiser step (per process)", default=1, ge=1)
    checkpoint_every: int = _help("write step_XXXXXX/ every N steps (and at the last step)", default=50, ge=1)
    gradient_checkpointing: bool = _help(
        "recompute activations in backward (less memory, ~30% slower)", default=False
    )
    max_length: int = _help(
        "longest response (AV) or explanation (AR) in tokens; longer ones are cut", default=128, ge=1
    )
    log_every: int = _help(
        "print a log line every N steps (every step goes to metrics.jsonl)", default=1, ge=1
    )
    adapter: AdapterRecipe = _help("LoRA / QLoRA / full", default_factory=AdapterRecipe)
    optim: OptimRecipe = _help("optimiser", default_factory=OptimRecipe)


@dataclass
class AVRecipe(StageRecipe):
    """AV supervised fine-tuning: vector → `<explanation>…</explanation>`, loss on the response only."""

    init: str | None = _help(
        "AV checkpoint whose weights (adapter or full) the run starts from: continued SFT (null: a fresh "
        "adapter on the base); its adapter must have the shape `adapter` describes",
        default=None,
    )


@dataclass
class ARRecipe(StageRecipe):
    """AR supervised fine-tuning: explanation → vector through K+1 blocks and an identity-initialised head."""

    head_lr: float | None = _help(
        "learning rate of the Linear(d, d) head (null: optim.lr)", default=None, gt=0
    )
    head_bias: bool = _help("give the head a bias", default=False)


@dataclass
class GRPOAlarms:
    """Thresholds of the alarms GRPO checks every step (`hubkit.train.alarms`); 0 or null turns one off.

    Each compares the mean over the last `window` steps with the mean over the first `window` steps."""

    window: int = _help("steps averaged on each side of a comparison", default=5, ge=1)
    length_drift: float | None = _help(
        "stop when the mean rollout length grows past this multiple of its starting value", default=1.5, gt=1
    )
    min_parsed: float | None = _help(
        "stop when the share of parsable, untruncated rollouts falls below this", default=0.5, ge=0, le=1
    )
    min_distinct: float | None = _help(
        "stop when the mean number of distinct outputs per group falls below this", default=1.5, ge=1
    )
    reading_drop: float | None = _help(
        "stop when the frozen SFT AR's real − empty cosine on the rollouts falls by more than this from its "
        "starting value (the explanations stop carrying the vector)",
        default=0.05,
        gt=0,
    )


@dataclass
class GRPORecipe(StageRecipe):
    """GRPO: the AV samples a group of explanations per vector; reward = −normalised MSE of the AR."""

    av_init: str | None = _help(
        "AV checkpoint to start from (null: the last step of <output_dir>/av)", default=None
    )
    ar_init: str | None = _help(
        "AR checkpoint giving rewards (null: the last step of <output_dir>/ar)", default=None
    )
    group_size: int = _help(
        "explanations sampled per vector (8 in both published recipes: kitft configs/rl.sh, EasyNLA "
        "nla/train_rl_vllm.py)",
        default=8,
        ge=2,
    )
    temperature: float = _help("sampling temperature (log-probs use the same)", default=1.0, gt=0)
    top_p: float = _help("nucleus sampling", default=1.0, gt=0, le=1)
    max_new_tokens: int = _help(
        "response-length cap: a rollout that reaches it without stopping is truncated and scored as a "
        "failure (kitft caps responses, having seen length drift 123 → 165 tokens without a cap)",
        default=48,
        ge=1,
    )
    length_target: int | None = _help(
        "tokens a rollout may use before the hinged length penalty starts (null: 3/4 of max_new_tokens)",
        default=None,
        ge=1,
    )
    length_penalty: float = _help(
        "reward −length_penalty per token beyond length_target (EasyNLA's hinged length penalty; 0 turns "
        "it off)",
        default=0.005,
        ge=0,
    )
    clip_eps: float = _help("PPO ratio clip ε", default=0.2, gt=0)
    kl_coef: float = _help(
        "β of the per-token KL (k3) to the reference (0.01 in both published recipes)", default=0.01, ge=0
    )
    inner_epochs: int = _help("optimiser passes over each sampled batch", default=1, ge=1)
    parse_penalty: float = _help(
        "a failed rollout (no parsable explanation, or truncated at max_new_tokens) is rewarded "
        "−parse_penalty (EasyNLA: −2)",
        default=2.0,
        ge=0,
    )
    reference: Literal["base", "init"] = _help(
        "KL reference: init (the starting SFT AV, frozen: both published recipes, kitft --ref-load the SFT "
        "checkpoint) or base (the adapter disabled: the untrained model)",
        default="init",
    )
    train_ar: bool = _help(
        "train the AR alongside on the sampled explanations, one MSE step per GRPO step (both published "
        "recipes); its figures are then reported beside the frozen SFT AR's",
        default=True,
    )
    ar_lr: float | None = _help(
        "learning rate of the AR when train_ar (null: 5 × optim.lr, kitft's critic/actor ratio for full "
        "fine-tunes; a LoRA AR drifted to the vectors' mean at 5x and kept reading at 1x, EasyNLA uses 0.8x)",
        default=None,
        gt=0,
    )
    alarms: GRPOAlarms = _help(
        "what stops a run that RL is taking somewhere wrong", default_factory=lambda: GRPOAlarms()
    )
    collapse_patience: int = _help(
        "stop after this many consecutive steps with one output template", default=3, ge=1
    )
    rollout_engine: str = _help(
        "where rollouts are sampled: transformers (in process), vllm (an offline vLLM engine given the "
        "policy's current LoRA adapter every step), the URL of a `vllm serve --enable-prompt-embeds "
        "--enable-lora` endpoint, or auto (vllm when installed and the AV injects by embedding "
        "replacement, else transformers)",
        default="transformers",
    )

    def __post_init__(self) -> None:
        try:
            self.rollout_engine = normalise(self.rollout_engine)
        except EngineError as err:
            raise ValueError(f"field `grpo.rollout_engine`: {err}") from None
        if self.length_target is not None and self.length_target > self.max_new_tokens:
            raise ValueError(
                f"field `grpo.length_target`: {self.length_target} is above max_new_tokens "
                f"({self.max_new_tokens}); the penalty would never apply"
            )

    @property
    def hinge(self) -> int:
        """Tokens a rollout may use before the length penalty starts."""
        return self.length_target or max(1, (3 * self.max_new_tokens) // 4)  # length_target >= 1 when set

    @property
    def critic_lr(self) -> float:
        """The AR's learning rate when it trains alongside: `ar_lr`, else 5 × the AV's."""
        return self.ar_lr if self.ar_lr is not None else 5.0 * self.optim.lr


@dataclass
class DistributedRecipe:
    """How the processes of one run share the work (`hubkit.train.distributed`; every field has a default, so
    a recipe may omit the section)."""

    strategy: Literal["ddp", "fsdp"] = _help(
        "ddp: a full copy per process, gradients summed; fsdp: parameters, gradients and optimiser state "
        "sharded over the processes (FSDP2), each decoder block a unit",
        default="ddp",
    )
    global_batch_size: int | None = _help(
        "rows per optimiser step over all processes (null: micro_batch_size x grad_accum x processes); when "
        "set, grad_accum = global_batch_size / (micro_batch_size x processes)",
        default=None,
        ge=1,
    )
    mixed_precision: Literal["none", "auto", "bfloat16", "float16"] = _help(
        "fsdp only: compute dtype of the gathered parameters (sharded weights stay in the recipe's dtype, "
        "gradients are reduced in float32); auto: hubkit.precision's choice for the device",
        default="none",
    )
    reshard_after_forward: bool = _help(
        "fsdp only: free gathered blocks after their forward (less memory, one more gather)", default=True
    )
    device_memory_gb: float | None = _help(
        "memory of one device for the fit estimate made before loading (null: the GPU's own; no estimate on CPU)",
        default=None,
        gt=0,
    )

    def is_default(self) -> bool:
        return self == DistributedRecipe()


@dataclass
class Recipe:
    """One training recipe: a base, a layer, the NLA's definition and the stages."""

    base_model: str = _help("registry name (smollm2-135m), Hub id or local folder")
    layer: int = _help("extraction layer L: the residual after decoder block L", ge=0)
    output_dir: str = _help("run folder; stages write <output_dir>/<stage>/step_XXXXXX", default="runs/nla")
    seed: int = _help("seed of data order, initialisation and sampling", default=0)
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = _help(
        "dtype of the base weights; auto: bfloat16 where the hardware runs it natively (GPU, CPU with "
        "AVX512-BF16/AMX), else float32",
        default="auto",
    )
    nla: NLARecipe = _help("the NLA's definition", default_factory=NLARecipe)
    av: AVRecipe | None = _help("AV SFT stage", default=None)
    ar: ARRecipe | None = _help("AR SFT stage", default=None)
    grpo: GRPORecipe | None = _help("GRPO stage", default=None)
    distributed: DistributedRecipe = _help(
        "how processes share the work: ddp or fsdp (hubkit.train.distributed)",
        default_factory=DistributedRecipe,
    )
    notes: str | None = _help("free text (not used)", default=None)

    def stage(self, name: Stage) -> StageRecipe:
        section = getattr(self, name)
        if section is None:
            raise RecipeError(f"the recipe has no `{name}:` section; add one to run `hubkit train {name}`")
        return section

    def config_sha256(self, stage: Stage, dtype: str | None = None) -> str:
        """Hash of everything that changes what `stage` computes: paths (the data are hashed themselves) and
        log/checkpoint cadence are left out, so a resumed run may move folders or checkpoint more often.

        `dtype` is the precision `dtype: auto` resolved to on this machine: it is hashed in place of
        ``auto``, so a run is never resumed in another precision than it started in."""
        data = to_dict(self)
        dropped = ("output_dir", "notes", "distributed", "av", "ar", "grpo")
        kept = {k: v for k, v in data.items() if k not in dropped}
        if dtype is not None:
            kept["dtype"] = dtype
        # ``distributed:`` counts only when it is not all defaults (recipes written before the section existed
        # keep their hashes), and never with its per-machine fields
        machine = ("device_memory_gb", "reshard_after_forward")
        distributed = {k: v for k, v in data["distributed"].items() if k not in machine}
        if distributed != {k: v for k, v in to_dict(DistributedRecipe()).items() if k not in machine}:
            kept["distributed"] = distributed
        cadence = ("data", "log_every", "checkpoint_every", "av_init", "ar_init")
        kept[stage] = {k: v for k, v in (data.get(stage) or {}).items() if k not in cadence}
        blob = json.dumps(kept, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(to_dict(self), sort_keys=False, allow_unicode=True))
        return path


def recipe_from_dict(data: Any, where: str = "<recipe>") -> Recipe:
    """Build a `Recipe` from parsed YAML; any schema problem becomes a `RecipeError` naming the field."""
    try:
        recipe = from_dict(Recipe, data, where)
        check_values(recipe)
        return recipe
    except SchemaError as exc:
        raise RecipeError(str(exc)) from exc
    except ValueError as exc:
        raise RecipeError(f"{where}: {exc}") from exc


def load_recipe(path: str | Path, overrides: dict[str, Any] | None = None) -> Recipe:
    """Read a recipe YAML; `overrides` are dotted keys (``av.steps``) applied before validation."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"{path}: no such recipe file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise RecipeError(f"{path}: not UTF-8 text (byte {exc.start}); a recipe is a YAML file") from exc
    except yaml.YAMLError as exc:
        raise RecipeError(f"{path}: not valid YAML ({' '.join(str(exc).split())})") from exc
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    for dotted, value in (overrides or {}).items():
        node = data
        *parents, last = dotted.split(".")
        for p in parents:
            if node.get(p) is None:  # absent, or an empty section (`av:`)
                node[p] = {}
            node = node[p]
        node[last] = value
    return recipe_from_dict(data, str(path))


def recipe_help(cls: type = Recipe, prefix: str = "") -> list[str]:
    """One line per recipe field with its type, default and help (for `hubkit train --help-recipe`)."""
    import typing

    lines = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        name = prefix + f.name
        sub = [a for a in typing.get_args(tp) or (tp,) if dataclasses.is_dataclass(a)]
        if f.default is not dataclasses.MISSING:
            default = f" (default: {f.default!r})"
        elif f.default_factory is not dataclasses.MISSING and not sub:
            default = f" (default: {f.default_factory()!r})"
        elif not sub:
            default = " (required)"
        else:
            default = ""
        lines.append(f"{name}: {f.metadata.get('help', '')}{default}")
        if sub:
            lines += recipe_help(sub[0], prefix=name + ".")
    return lines
