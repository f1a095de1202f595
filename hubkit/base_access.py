"""The NLA's base model reached from a loaded pair (reading activations, splicing vectors back): a LoRA AV's
model with every adapter off (peft's ``disable_adapter``), else the base its meta names, loaded.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from hubkit import loading


@dataclass
class Base:
    """A base model and its tokenizer (what extraction reads)."""

    model: nn.Module
    tokenizer: Any


def load_base(name: str, device: str | None = None, dtype: str | torch.dtype | None = None) -> Base:
    """The base `name` (folder, registry model or Hub id) with its tokenizer, in `dtype` on `device`."""
    path = loading.resolve_base(name)
    model = loading.load_causal_lm(path, loading.choose_dtype(dtype, device, what=f"base {name}"), device)
    return Base(model, loading.load_tokenizer(path))


def loaded_base(pair, base: Base | None = None, base_model: str | None = None) -> Base | None:
    """`base`, or the base loaded once for a full-weights AV; None for a LoRA AV (`base_of` disables it)."""
    from peft import PeftModel

    if base is not None or isinstance(pair.av.model, PeftModel):
        return base
    p = next(pair.av.model.parameters())
    return load_base(base_model or pair.av.meta.base_model, device=str(p.device), dtype=p.dtype)


@contextlib.contextmanager
def base_of(pair, base: Base | None = None, base_model: str | None = None) -> Iterator[Base]:
    """The pair's base for the duration: `base`, a LoRA AV's model with adapters off, or the base its
    meta names (or `base_model`) loaded in the AV's dtype and device."""
    from peft import PeftModel

    if base is None and isinstance(pair.av.model, PeftModel):
        with pair.av.model.disable_adapter():
            yield Base(pair.av.model, pair.av.tokenizer)
    else:
        yield loaded_base(pair, base, base_model)
