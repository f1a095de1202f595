"""Training the two halves of an NLA: AV and AR supervised fine-tuning, GRPO, trajectory checkpoints.

Heavy imports (torch, transformers, peft) happen on first use of an export."""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Recipe": "hubkit.train.recipe",
    "RecipeError": "hubkit.train.recipe",
    "load_recipe": "hubkit.train.recipe",
    "RunOptions": "hubkit.train.loop",
    "train_av": "hubkit.train.sft_av",
    "train_ar": "hubkit.train.sft_ar",
    "train_grpo": "hubkit.train.grpo",
    "PolicyCollapsed": "hubkit.train.grpo",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'hubkit.train' has no attribute {name!r}")
