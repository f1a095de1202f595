"""Loading base models, adapters and tokenizers for either half of an NLA.

One base can carry several LoRA adapters (AV and AR), switched with `active_adapter`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from hubkit import constants as C
from hubkit.errors import CheckpointError

log = logging.getLogger(__name__)


def resolve_base(name_or_path: str) -> str:
    """A loadable location for a base model: a local folder, an offline registry model, or a Hub id."""
    if Path(name_or_path).is_dir():
        return str(name_or_path)
    try:
        from hubkit import models
    except ImportError:  # pragma: no cover - models is part of the package
        return name_or_path
    return models.resolve_base(name_or_path)


def parse_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    table = {
        "float32": torch.float32,
        "fp32": torch.float32,
        "bfloat16": torch.bfloat16,
        "bf16": torch.bfloat16,
        "float16": torch.float16,
        "fp16": torch.float16,
    }
    if dtype not in table:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of {sorted(table)}")
    return table[dtype]


def load_causal_lm(
    path: str, dtype: torch.dtype | None = None, device: str | None = None, quant: str = "none"
):
    """`AutoModelForCausalLM` (or the multimodal class for Gemma-4-style configs) from a folder or id."""
    from transformers import AutoConfig, AutoModelForCausalLM

    kwargs: dict = {"dtype": dtype or torch.float32}
    if quant == "nf4":
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype or torch.bfloat16
        )
    elif quant == "int8":
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(load_in_8bit=True)
    cfg = AutoConfig.from_pretrained(path)
    if getattr(cfg, "text_config", None) is not None and cfg.model_type == "gemma4":
        from transformers import Gemma4ForConditionalGeneration

        model = Gemma4ForConditionalGeneration.from_pretrained(path, **kwargs)
    else:
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    if device and quant == "none":
        model = model.to(device)
    return model.eval()


def load_tokenizer(*candidates: str | Path | None):
    """The first folder among `candidates` that holds a tokenizer (checkpoint first, then base)."""
    from transformers import AutoTokenizer

    errors = []
    for c in candidates:
        if c is None:
            continue
        p = Path(c)
        if p.is_dir() and not any((p / f).exists() for f in ("tokenizer.json", "tokenizer_config.json")):
            continue
        try:
            return AutoTokenizer.from_pretrained(str(c))
        except (OSError, ValueError) as exc:
            errors.append(f"{c}: {exc}")
    raise CheckpointError(
        "no tokenizer found in " + ", ".join(str(c) for c in candidates if c) + "; " + "; ".join(errors)
    )


def is_adapter(folder: Path) -> bool:
    return (folder / C.ADAPTER_CONFIG_FILE).exists()


def adapter_base(folder: Path) -> str | None:
    import json

    cfg = json.loads((folder / C.ADAPTER_CONFIG_FILE).read_text())
    return cfg.get("base_model_name_or_path")


def attach_adapter(model: nn.Module, folder: Path, name: str) -> nn.Module:
    """Load the LoRA adapter in `folder` onto `model` under `name` (wrapping it in peft once)."""
    from peft import PeftModel

    if isinstance(model, PeftModel):
        model.load_adapter(str(folder), adapter_name=name)
        return model
    return PeftModel.from_pretrained(model, str(folder), adapter_name=name)


@contextlib.contextmanager
def active_adapter(model: nn.Module, name: str | None) -> Iterator[None]:
    """Make adapter `name` the active one for the duration (no-op on plain models)."""
    from peft import PeftModel

    if name is None or not isinstance(model, PeftModel):
        yield
        return
    previous = model.active_adapter
    model.set_adapter(name)
    try:
        yield
    finally:
        model.set_adapter(previous)


def model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device
