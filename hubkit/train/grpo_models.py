"""GRPO's models: the policy and its KL reference, the AR giving rewards (frozen or trained alongside)
and the frozen SFT AR beside it, and what is refused before any of them loads."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from peft import PeftModel
from torch import nn

from hubkit import arch, heads, loading
from hubkit.checkpoint import verify_checkpoint
from hubkit.errors import CheckpointError, HubkitError
from hubkit.meta import NLAMeta, check_compatible
from hubkit.reconstructor import ActivationReconstructor
from hubkit.train.adapters import load_model, prepare_for_training
from hubkit.train.distributed import check_two_copies
from hubkit.train.recipe import GRPORecipe, Recipe
from hubkit.train.trajectory import latest_step

POLICY = "av"
REFERENCE = "ref"
FROZEN_AR = "ar_sft"


def _quiet_dropout(model: nn.Module) -> None:
    """Zero every dropout: sampling and the loss must see the same policy (ratio 1 on the first pass)."""
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0


def init_dir(given: str | None, recipe: Recipe, stage: str) -> Path:
    """The AV or AR checkpoint GRPO starts from, its files checked against the hashes recorded with it."""
    if given is not None and not Path(given).is_dir():
        raise CheckpointError(f"grpo.{stage}_init: {given} is not a checkpoint folder")
    path = Path(given) if given is not None else latest_step(Path(recipe.output_dir) / stage)
    if path is None:
        raise CheckpointError(
            f"no {stage.upper()} checkpoint to start GRPO from: set `grpo.{stage}_init` or run `hubkit train {stage}` "
            f"first (looked in {Path(recipe.output_dir) / stage})"
        )
    verify_checkpoint(path)
    return path


def load_policy(
    recipe: Recipe, cfg: GRPORecipe, av_dir: Path, device: torch.device, dtype_name: str
) -> tuple[nn.Module, nn.Module | None, Any, NLAMeta]:
    """(policy model, reference model or ``None``, tokenizer, AV meta) started from the AV at `av_dir`.

    A LoRA AV keeps training its adapter (`av`); the reference is the same base with the adapter
    disabled, or a frozen copy of the starting adapter (`ref`): no second model in memory. A fully
    fine-tuned AV trains all weights; its reference is a second, frozen model (the base or the start).
    """
    meta = NLAMeta.load(av_dir)
    if meta.role != "av":
        raise CheckpointError(
            f"{av_dir}: grpo.av_init must be an AV checkpoint, this is an {meta.role.upper()}"
        )
    dtype = getattr(torch, dtype_name)
    base = loading.resolve_base(recipe.base_model)
    reference = None
    if loading.is_adapter(av_dir):
        model = load_model(base, dtype, device, meta.adapter.quant)
        model = prepare_for_training(model, meta.adapter.quant != "none", cfg.gradient_checkpointing)
        model = PeftModel.from_pretrained(model, str(av_dir), adapter_name=POLICY, is_trainable=True)
        if cfg.reference == "init" and cfg.kl_coef > 0:
            model.load_adapter(str(av_dir), adapter_name=REFERENCE)
        model.set_adapter(POLICY)
    else:
        model = load_model(str(av_dir), dtype, device).requires_grad_(True)
        model = prepare_for_training(model, False, cfg.gradient_checkpointing)
        if cfg.kl_coef > 0:  # with β = 0 the KL term is never computed: no second copy
            reference = load_model(str(av_dir) if cfg.reference == "init" else base, dtype, device)
            reference.requires_grad_(False).eval()
    tok = loading.load_tokenizer(av_dir, base)
    _quiet_dropout(model)
    return model, reference, tok, meta


def load_ar(
    recipe: Recipe, ar_dir: Path, device: torch.device, train: bool, dtype_name: str
) -> ActivationReconstructor:
    """The AR giving rewards: frozen, or with its adapter (or weights) and head trainable."""
    if not train:
        return ActivationReconstructor.from_pretrained(
            ar_dir, base_model=recipe.base_model, device=str(device), dtype=dtype_name
        )
    meta = NLAMeta.load(ar_dir)
    if meta.ar is None or meta.role != "ar":
        raise CheckpointError(f"{ar_dir}: grpo.ar_init must be an AR checkpoint")
    head, lora_state = heads.load_head(ar_dir, meta.ar.head_format, meta.d_model, meta.ar.head_bias)
    if lora_state:
        raise CheckpointError(
            f"{ar_dir}: an AR with LoRA tensors inside its head file cannot be trained here; "
            "set grpo.train_ar: false"
        )
    dtype = getattr(torch, dtype_name)
    base = loading.resolve_base(recipe.base_model)
    if loading.is_adapter(ar_dir):
        model = load_model(base, dtype, device, meta.adapter.quant)
        model = loading.attach_adapter(model, ar_dir, "ar", kept_blocks=meta.ar.num_layers, is_trainable=True)
    else:
        model = load_model(str(ar_dir), dtype, device).requires_grad_(True)
    arch.truncate(model, meta.ar.num_layers)
    _quiet_dropout(model)
    head = head.to(device).requires_grad_(True)
    return ActivationReconstructor(model, loading.load_tokenizer(ar_dir, base), meta, head)


def frozen_ar(
    trained: ActivationReconstructor, ar_dir: Path, recipe: Recipe, device: torch.device, dtype_name: str
) -> ActivationReconstructor:
    """The SFT AR, frozen, beside the one GRPO trains: the fixed yardstick of the alarms.

    A LoRA AR gets the SFT adapter a second time (`FROZEN_AR`) on the same truncated base, and a copy of
    its starting head: no second model. A fully fine-tuned AR is loaded again."""
    if not isinstance(trained.model, PeftModel):
        return load_ar(recipe, ar_dir, device, False, dtype_name)
    meta = trained.meta
    loading.attach_adapter(trained.model, ar_dir, FROZEN_AR, kept_blocks=meta.ar.num_layers)
    trained.model.set_adapter("ar")
    for name, param in trained.model.named_parameters():
        if f".{FROZEN_AR}." in name:
            param.requires_grad_(False)
    head = copy.deepcopy(trained.head).requires_grad_(False)
    return ActivationReconstructor(trained.model, trained.tokenizer, meta, head, adapter_name=FROZEN_AR)


def preflight(
    recipe: Recipe, cfg: GRPORecipe, av_dir: Path, ar_dir: Path, dtype_name: str, device: str = "cpu"
) -> None:
    """What can be refused before any model loads: halves over other bases or layers, a length cap that
    cannot hold the closing tag, a second full copy of the AV that does not fit in `device`'s memory."""
    av_meta, ar_meta = NLAMeta.load(av_dir), NLAMeta.load(ar_dir)
    try:
        check_compatible(av_meta, ar_meta)
    except HubkitError as exc:
        raise CheckpointError(f"grpo.av_init {av_dir} and grpo.ar_init {ar_dir}: {exc}") from None
    if av_meta.av is not None:
        tok = loading.load_tokenizer(av_dir, loading.resolve_base(recipe.base_model))
        closing = av_meta.av.explanation_open + "x" + av_meta.av.explanation_close
        need = len(tok(closing, add_special_tokens=False)["input_ids"]) + 1  # + the stop token
        if cfg.max_new_tokens < need:
            raise CheckpointError(
                f"field `grpo.max_new_tokens`: {cfg.max_new_tokens} tokens cannot hold even a one-word "
                f"explanation in its tags ({closing!r} and the stop token take {need}); raise it"
            )
    if not loading.is_adapter(av_dir) and cfg.kl_coef > 0:
        check_two_copies(av_dir, cfg.reference, dtype_name, device)
