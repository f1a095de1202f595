"""The base model and torch threads of a data stage, from the names a command line gives."""

from __future__ import annotations

import os
from typing import Any

import torch

from hubkit import models, processes
from hubkit.precision import apply_thread_policy_unless_set, check_device, resolve_dtype


def set_threads(threads: int | None) -> int:
    """Torch threads: `threads` when given, else hubkit's policy (physical cores available, shared by the
    processes a launcher started on this node)."""
    if threads:
        torch.set_num_threads(threads)
        return threads
    return apply_thread_policy_unless_set(workers=int(os.environ.get("LOCAL_WORLD_SIZE", "1")))


def load_base(name: str, revision: str | None, dtype: str, device: str) -> tuple[Any, Any]:
    """(model, tokenizer): an offline registry model or local folder via hubkit.models, else transformers.

    `dtype` may be ``auto`` (bfloat16 where the hardware runs it natively, else float32)."""
    device = processes.local_device(device)
    check_device(device)
    torch_dtype = resolve_dtype(dtype, device)
    if revision is None:
        return models.load(name, dtype=torch_dtype, device=device)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(name, revision=revision, dtype=torch_dtype).to(device).eval()
    return model, AutoTokenizer.from_pretrained(name, revision=revision)
