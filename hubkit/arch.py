"""Find the parts of a causal LM that NLAs touch, whatever the architecture wraps them in.

`FAMILIES` is the one table of base families, keyed by ``config.model_type``; a new family is one line
here, and an unknown one is found by probing the usual places.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pad_sequence

from hubkit.errors import CheckpointError

if TYPE_CHECKING:
    from transformers import PretrainedConfig


@dataclass(frozen=True)
class Family:
    """Where a family keeps what NLAs touch, relative to the ``*ForCausalLM`` (or multimodal) model."""

    decoder: str = "model"  # the module owning embed_tokens, the blocks and the final norm
    blocks: str = "layers"
    final_norm: str = "norm"
    embed_scale: str = "none"  # "sqrt_d_model": the embedding module multiplies by sqrt(hidden_size)


_PLAIN, _SCALED = Family(), Family(embed_scale="sqrt_d_model")
_MULTIMODAL = Family(decoder="model.language_model", embed_scale="sqrt_d_model")
FAMILIES: dict[str, Family] = {
    "llama": _PLAIN,
    "mistral": _PLAIN,
    "qwen2": _PLAIN,
    "qwen3": _PLAIN,
    "olmo2": _PLAIN,
    "phi3": _PLAIN,
    "gemma": _SCALED,
    "gemma2": _SCALED,
    "gemma3_text": _SCALED,
    "gemma3": _MULTIMODAL,
    "gemma4_text": _SCALED,
    "gemma4": _MULTIMODAL,
}

_PATHS = (
    "model.language_model",
    "language_model",
    "model",
    "base_model.model.model.language_model",
    "base_model.model.model",
    "",
)
_PEFT_PREFIX = "base_model.model."


def _get(obj: nn.Module, dotted: str) -> nn.Module | None:
    return functools.reduce(lambda o, part: getattr(o, part, None), filter(None, dotted.split(".")), obj)


def family(model: nn.Module) -> Family | None:
    """The `FAMILIES` entry for `model`'s ``config.model_type`` (None for a family not in the table)."""
    cfg = getattr(model, "config", None)
    return FAMILIES.get(getattr(cfg, "model_type", None))


def _is_decoder(sub: nn.Module | None, fam: Family) -> bool:
    return isinstance(getattr(sub, fam.blocks, None), nn.ModuleList) and hasattr(sub, "embed_tokens")


def text_model(model: nn.Module) -> nn.Module:
    """The decoder stack (module owning ``embed_tokens``, the blocks and the final norm)."""
    fam = family(model)
    if fam is not None:
        for path in (fam.decoder, _PEFT_PREFIX + fam.decoder):
            sub = _get(model, path)
            if _is_decoder(sub, fam):
                return sub
    for path in _PATHS:
        sub = _get(model, path)
        if _is_decoder(sub, Family()):
            return sub
    raise CheckpointError(
        f"cannot find the decoder layers of {type(model).__name__}: expected a module with "
        "`embed_tokens` and a `layers` ModuleList (Llama/Qwen/Gemma style); add its model_type to "
        "hubkit.arch.FAMILIES"
    )


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    return getattr(text_model(model), (family(model) or Family()).blocks)


def num_layers(model: nn.Module) -> int:
    return len(decoder_layers(model))


def text_config(model: nn.Module) -> PretrainedConfig:
    cfg = model.config
    return cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg


def right_padded(rows: Sequence[Tensor], pad_id: int = 0) -> tuple[Tensor, Tensor]:
    """(input_ids, attention_mask) of token rows padded on the right: a causal model's real tokens never see
    the padding."""
    ids = pad_sequence(list(rows), batch_first=True, padding_value=pad_id)
    mask = pad_sequence([torch.ones_like(r) for r in rows], batch_first=True)
    return ids, mask


def context_length(model: nn.Module) -> int | None:
    """The model's context window (``max_position_embeddings``), when its config has one."""
    n = getattr(text_config(model), "max_position_embeddings", None)
    return int(n) if n else None


def hidden_size(model: nn.Module) -> int:
    return int(text_config(model).hidden_size)


def embedding_scale(model: nn.Module) -> float:
    """Factor the model multiplies its token embeddings by (Gemma: sqrt(hidden_size); others 1)."""
    scale = getattr(text_model(model).embed_tokens, "embed_scale", None)
    return 1.0 if scale is None else float(scale)


def final_norm(model: nn.Module) -> nn.Module | None:
    """The decoder's final norm module (None when the model has none or it was already dropped)."""
    tm, fam = text_model(model), family(model) or Family()
    norm = getattr(tm, fam.final_norm, None)
    return None if norm is None or isinstance(norm, nn.Identity) else norm


def set_final_norm(model: nn.Module, module: nn.Module) -> None:
    """Put `module` back as the decoder's final norm (an export keeps the base's norm in its files)."""
    tm, fam = text_model(model), family(model) or Family()
    setattr(tm, fam.final_norm, module)


def truncate(model: nn.Module, n_keep: int) -> nn.Module:
    """Keep the first `n_keep` decoder blocks and drop the final norm (in place)."""
    tm, fam = text_model(model), family(model) or Family()
    total = len(getattr(tm, fam.blocks))
    if not 1 <= n_keep <= total:
        raise CheckpointError(
            f"layer {n_keep - 1} needs the first {n_keep} blocks, but the model has {total} "
            f"(layers 0..{total - 1}); choose a layer inside the model"
        )
    setattr(tm, fam.blocks, nn.ModuleList(list(getattr(tm, fam.blocks))[:n_keep]))
    setattr(tm, fam.final_norm, nn.Identity())
    if hasattr(tm, "embed_tokens_per_layer"):
        # Gemma-4 reshapes its per-layer embeddings by the original depth: keep the config as is.
        return model
    cfg = text_config(model)
    cfg.num_hidden_layers = n_keep
    if getattr(cfg, "layer_types", None):
        cfg.layer_types = list(cfg.layer_types)[:n_keep]
    return model


def _is_sharded(model: nn.Module) -> bool:
    """FSDP2 shards the causal LM (under a peft wrapper, its base model)."""
    from torch.distributed.fsdp import FSDPModule

    inner = getattr(model, "get_base_model", None)
    return isinstance(inner() if callable(inner) else model, FSDPModule)


class _StopForward(Exception):
    pass


def hidden_at_block_grad(model: nn.Module, block: int, **inputs: torch.Tensor) -> torch.Tensor:
    """Residual stream after decoder block `block`, keeping the autograd graph; later blocks never run.

    An FSDP model runs whole (its hooks gather weights on the root): it must already end at `block`.
    """
    tm, layers = text_model(model), decoder_layers(model)
    if not 0 <= block < len(layers):
        raise CheckpointError(f"block {block} is outside the model's {len(layers)} blocks")
    if _is_sharded(model):
        if block != len(layers) - 1 or final_norm(model) is not None:
            raise CheckpointError(
                f"a sharded model is read at its last block only: truncate it to {block + 1} blocks first"
            )
        out = model(**inputs, use_cache=False, output_hidden_states=True, logits_to_keep=1)
        return out.hidden_states[-1]
    captured: list[torch.Tensor] = []

    def hook(_m, _a, output):
        captured.append(output[0] if isinstance(output, tuple) else output)
        raise _StopForward

    with layers[block].register_forward_hook(hook), contextlib.suppress(_StopForward):
        tm(**inputs, use_cache=False)
    if not captured:
        raise CheckpointError(f"block {block} did not run in {type(model).__name__}'s forward")
    return captured[0]


hidden_at_block = torch.no_grad()(hidden_at_block_grad)  # the same read-out without the autograd graph
