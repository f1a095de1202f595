"""Training the two halves of an NLA: AV and AR supervised fine-tuning, GRPO, trajectory checkpoints.

Heavy imports (torch, transformers, peft) happen on first use of an export."""

from __future__ import annotations

from hubkit.lazy import lazy_exports

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
__getattr__ = lazy_exports(__name__, _EXPORTS)
