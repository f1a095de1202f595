"""Find the parts of a causal LM that NLAs touch, whatever the architecture wraps them in.

Llama/Qwen2/Gemma-3 keep the decoder at ``model.model``; Gemma-4 (multimodal) keeps its text
tower at ``model.model.language_model``; a peft model adds ``base_model.model`` in front.
"""

from __future__ import annotations

import torch
from torch import nn

from hubkit.errors import CheckpointError

_PATHS = (
    "model.language_model",
    "language_model",
    "model",
    "base_model.model.model.language_model",
    "base_model.model.model",
    "",
)


def _get(obj: nn.Module, dotted: str) -> nn.Module | None:
    for part in filter(None, dotted.split(".")):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def text_model(model: nn.Module) -> nn.Module:
    """The decoder stack (module owning ``embed_tokens``, ``layers`` and ``norm``)."""
    for path in _PATHS:
        sub = _get(model, path)
        if (
            sub is not None
            and isinstance(getattr(sub, "layers", None), nn.ModuleList)
            and hasattr(sub, "embed_tokens")
        ):
            return sub
    raise CheckpointError(
        f"cannot find the decoder layers of {type(model).__name__}: expected a module with "
        "`embed_tokens` and a `layers` ModuleList (Llama/Qwen/Gemma style)"
    )


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    return text_model(model).layers


def num_layers(model: nn.Module) -> int:
    return len(decoder_layers(model))


def text_config(model: nn.Module):
    cfg = model.config
    return cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg


def hidden_size(model: nn.Module) -> int:
    return int(text_config(model).hidden_size)


def embedding_scale(model: nn.Module) -> float:
    """Factor the model multiplies its token embeddings by (Gemma: sqrt(hidden_size); others 1)."""
    emb = text_model(model).embed_tokens
    scale = getattr(emb, "embed_scale", None)
    if scale is None:
        return 1.0
    return float(scale.item() if isinstance(scale, torch.Tensor) else scale)


def median_embedding_norm(model: nn.Module) -> float:
    """Median token-embedding norm after the model's own scaling (defined in `hubkit.scale_lint`)."""
    from hubkit.scale_lint import embedding_norm

    return embedding_norm(model)


def truncate(model: nn.Module, n_keep: int) -> nn.Module:
    """Keep the first `n_keep` decoder blocks and drop the final norm (in place).

    The residual stream after block ``n_keep - 1`` is then the backbone's ``last_hidden_state``.
    """
    tm = text_model(model)
    total = len(tm.layers)
    if not 1 <= n_keep <= total:
        raise CheckpointError(f"cannot keep {n_keep} blocks of a model with {total}; need 1..{total}")
    tm.layers = nn.ModuleList(list(tm.layers)[:n_keep])
    tm.norm = nn.Identity()
    if hasattr(tm, "embed_tokens_per_layer"):
        # Gemma-4 reshapes its per-layer embeddings by the original depth: keep the config as is.
        return model
    cfg = text_config(model)
    cfg.num_hidden_layers = n_keep
    if getattr(cfg, "layer_types", None):
        cfg.layer_types = list(cfg.layer_types)[:n_keep]
    return model


class _StopForward(Exception):
    pass


@torch.no_grad()
def hidden_at_block(model: nn.Module, block: int, **inputs) -> torch.Tensor:
    """Residual stream at the output of decoder block `block` (``hidden_states[block + 1]``).

    The forward stops there: later blocks, the final norm and the LM head never run.
    """
    return hidden_at_block_grad(model, block, **inputs)


def hidden_at_block_grad(model: nn.Module, block: int, **inputs) -> torch.Tensor:
    """`hidden_at_block` that keeps the autograd graph (for training the AR)."""
    tm = text_model(model)
    if not 0 <= block < len(tm.layers):
        raise CheckpointError(f"block {block} is outside the model's {len(tm.layers)} blocks")
    captured: list[torch.Tensor] = []

    def hook(_m, _a, output):
        captured.append(output[0] if isinstance(output, tuple) else output)
        raise _StopForward

    handle = tm.layers[block].register_forward_hook(hook)
    try:
        tm(**inputs, use_cache=False)
    except _StopForward:
        pass
    finally:
        handle.remove()
    if not captured:
        raise CheckpointError(f"block {block} did not run in {type(model).__name__}'s forward")
    return captured[0]
