"""What a stage trains and with which optimiser: LoRA, QLoRA (NF4 base) or full weights; AdamW or 8-bit AdamW."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
from torch import nn

from hubkit import loading
from hubkit.errors import HubkitError, first_line
from hubkit.meta import Adapter
from hubkit.precision import resolve_dtype
from hubkit.train import fsdp
from hubkit.train.recipe import AdapterRecipe, OptimRecipe, Recipe


def load_model(path: str, dtype: torch.dtype, device: torch.device | None, quant: str = "none") -> nn.Module:
    """A causal LM on `device`; a quantized one is placed there while loading (bitsandbytes cannot move it)."""
    if quant != "none" and device is not None and device.type != "cpu":
        from transformers import AutoModelForCausalLM, BitsAndBytesConfig

        qc = (
            BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype)
            if quant == "nf4"
            else BitsAndBytesConfig(load_in_8bit=True)
        )
        model = AutoModelForCausalLM.from_pretrained(
            path, dtype=dtype, quantization_config=qc, device_map={"": str(device)}
        )
        return model.eval()
    return loading.load_causal_lm(path, dtype, None if device is None else str(device), quant)


def load_base(
    recipe: Recipe, adapter: AdapterRecipe, device: torch.device, dtype: str
) -> tuple[nn.Module, object]:
    """(model, tokenizer) of the recipe's base on `device` in `dtype`, 4-bit NF4 when the adapter is `qlora`."""
    path = loading.resolve_base(recipe.base_model)
    torch_dtype = resolve_dtype(dtype, device)
    model = load_model(path, torch_dtype, device, "nf4" if adapter.kind == "qlora" else "none")
    return model, loading.load_tokenizer(path)


def prepare_for_training(model: nn.Module, quantized: bool, gradient_checkpointing: bool) -> nn.Module:
    """Non-reentrant gradient checkpointing when asked, and peft's k-bit preparation of a quantized base."""
    if quantized:
        return prepare_model_for_kbit_training(
            model,
            use_gradient_checkpointing=gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
    if gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model


def add_adapter(model: nn.Module, cfg: AdapterRecipe, name: str, gradient_checkpointing: bool) -> nn.Module:
    """Make `model` trainable as `cfg` says; returns the (possibly peft-wrapped) model."""
    if gradient_checkpointing and hasattr(model, "config"):
        model.config.use_cache = False
    model = prepare_for_training(model, cfg.kind == "qlora", gradient_checkpointing)
    if cfg.kind == "full":
        return model.requires_grad_(True)
    lora = LoraConfig(
        r=cfg.r,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.dropout,
        target_modules=cfg.target_modules,
        bias="none",
    )
    try:
        return get_peft_model(model, lora, adapter_name=name)
    except ValueError as exc:  # peft's NoMatchingPeftModuleError and its other config refusals
        linear = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, nn.Linear)})
        raise HubkitError(
            f"field `{name}.adapter.target_modules` {cfg.target_modules}: {first_line(exc)} "
            f"(the base's linear layers: {', '.join(linear[:12])})"
        ) from exc


def meta_adapter(cfg: AdapterRecipe) -> Adapter:
    """The meta's `adapter:` section for what a stage trained."""
    if cfg.kind == "full":
        return Adapter(kind="full")
    return Adapter(
        kind="lora",
        r=cfg.r,
        alpha=cfg.alpha,
        target_modules=cfg.target_modules,
        quant="nf4" if cfg.kind == "qlora" else "none",
    )


def trainable(model: nn.Module) -> list[nn.Parameter]:
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise HubkitError("nothing to train: no parameter of the model requires a gradient")
    return params


def make_optimizer(groups: list[dict], cfg: OptimRecipe) -> torch.optim.Optimizer:
    """AdamW (torch) or 8-bit AdamW (bitsandbytes) over parameter `groups` (each may set its own lr).

    Over sharded (FSDP) parameters the optimiser also loads a full, single-process state dict."""
    kwargs = dict(lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=cfg.weight_decay)
    sharded = any(fsdp.is_dtensor(p) for g in groups for p in g["params"])
    if cfg.optimizer == "adamw_8bit":
        if sharded:
            raise HubkitError(
                "optim.optimizer adamw_8bit cannot step sharded (FSDP) parameters: bitsandbytes has no DTensor "
                "support; use adamw with distributed.strategy fsdp, or strategy ddp"
            )
        import bitsandbytes as bnb

        return bnb.optim.AdamW8bit(groups, **kwargs)
    optimizer = torch.optim.AdamW(groups, **kwargs)
    if sharded:
        fsdp.attach_full_state_loading(optimizer)
    return optimizer


def make_scheduler(
    optimizer: torch.optim.Optimizer, cfg: OptimRecipe, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """The peak lr times, at step `s` (0-based): linear warm-up, then constant, linear or cosine decay."""

    def f(s: int) -> float:
        if cfg.warmup_steps and s < cfg.warmup_steps:
            return (s + 1) / cfg.warmup_steps
        if cfg.schedule == "constant":
            return 1.0
        span = max(1, total_steps - cfg.warmup_steps)
        t = min(1.0, (s - cfg.warmup_steps) / span)
        return 1.0 - t if cfg.schedule == "linear" else 0.5 * (1.0 + math.cos(math.pi * t))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, f)


def grad_norm_clip(params: Iterable[nn.Parameter], max_norm: float | None) -> float:
    """Clip the global gradient norm (when `max_norm` is set) and return it before clipping."""
    params = [p for p in params if p.grad is not None]
    if any(fsdp.is_dtensor(p) for p in params):
        return fsdp.grad_norm_clip(params, max_norm)
    if not params:
        return 0.0
    if max_norm is None:
        return float(torch.norm(torch.stack([p.grad.detach().float().norm() for p in params])))
    return float(torch.nn.utils.clip_grad_norm_(params, max_norm))
