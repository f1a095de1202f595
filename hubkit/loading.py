"""Loading base models, adapters and tokenizers; one base may carry several LoRA adapters."""

from __future__ import annotations

import contextlib
import json
import logging
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hubkit import adapter_check, hub, precision
from hubkit import constants as C
from hubkit.checkpoint import verify_on_load
from hubkit.errors import CheckpointError, MetaError, first_line
from hubkit.lora_state import attach_lora_state
from hubkit.meta import NLAMeta
from hubkit.models import resolve_base as resolve_base  # the load path's callers resolve a base here

log = logging.getLogger(__name__)


def parse_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    """A torch dtype for a name (``bf16``, ``float32``, …) or None; an unknown name lists the valid ones."""
    return None if dtype is None else precision.resolve_dtype(dtype)


def choose_dtype(
    dtype: str | torch.dtype | None, device: str | None = None, what: str = "model"
) -> torch.dtype:
    """The dtype to load in: `dtype` if forced, else chosen from the hardware ("auto"); logged."""
    chosen = precision.resolve_dtype(dtype, device)
    how = "auto" if dtype is None or dtype == "auto" else "forced"
    log.info("loading %s in %s (%s)", what, precision.resolve_dtype_name(chosen), how)
    return chosen


def load_causal_lm(
    path: str, dtype: torch.dtype | None = None, device: str | None = None, quant: str = "none"
):
    """`AutoModelForCausalLM` (or the multimodal class for Gemma-4-style configs) from a folder or id."""
    from transformers import AutoConfig, AutoModelForCausalLM

    kwargs: dict = {"dtype": dtype or torch.float32}
    if quant in ("nf4", "int8"):
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = (
            BitsAndBytesConfig(
                load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype or torch.bfloat16
            )
            if quant == "nf4"
            else BitsAndBytesConfig(load_in_8bit=True)
        )
    cfg = AutoConfig.from_pretrained(path)
    if getattr(cfg, "text_config", None) is not None and cfg.model_type == "gemma4":
        from transformers import Gemma4ForConditionalGeneration

        model = Gemma4ForConditionalGeneration.from_pretrained(path, **kwargs)
    else:
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    if device and quant == "none":
        model = model.to(device)
    return model.eval()


def open_checkpoint(
    repo_or_dir: str | Path,
    role: str,
    revision: str | None = None,
    subfolder: str | None = None,
    verify: bool = True,
    injection_scale: float | str | None = None,
) -> tuple[Path, NLAMeta]:
    """The local folder and meta of one NLA half (`role`), its files verified unless `verify` is False."""
    folder = hub.resolve(repo_or_dir, revision=revision, subfolder=subfolder)
    meta = NLAMeta.load(folder, injection_scale=injection_scale)
    if meta.role != role:
        raise MetaError(f"{folder}: this is an {meta.role.upper()} checkpoint, not an {role.upper()}")
    verify_on_load(folder, verify)
    return folder, meta


def load_half(
    folder: Path,
    meta: NLAMeta,
    base_model: str | None = None,
    device: str | None = None,
    dtype: str | torch.dtype | None = None,
    lora_state: dict[str, torch.Tensor] | None = None,
) -> tuple[nn.Module, Any, str | None]:
    """(model in eval mode, tokenizer, adapter name) of the NLA half in `folder`: its LoRA attached onto
    the base its meta names (or `base_model`) under its role's name, else its own full weights under no
    adapter name. An AR's LoRA is attached to the blocks it keeps."""
    name = meta.role
    dt = choose_dtype(dtype, device, what=f"{name.upper()} {folder}")
    if not (is_adapter(folder) or lora_state):
        model = load_causal_lm(str(folder), dt, device)
        return model.eval(), load_tokenizer(folder, base_model and resolve_base(base_model)), None
    base = resolve_base(base_model or meta.base_model)
    model = load_causal_lm(base, dt, device, meta.adapter.quant)
    if is_adapter(folder):
        model = attach_adapter(model, folder, name, kept_blocks=meta.ar.num_layers if name == "ar" else None)
    else:
        model = attach_lora_state(model, meta, lora_state, folder)
    return model.eval(), load_tokenizer(folder, base), name


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")
ADAPTER_WEIGHT_FILES = (C.ADAPTER_WEIGHTS_FILE, "adapter_model.bin")


def load_tokenizer(*candidates: str | Path | None):
    """The tokenizer of the first candidate holding one; broken tokenizer files are an error naming them."""
    from transformers import AutoTokenizer

    errors = []
    for c in filter(None, candidates):
        p = Path(c)
        if p.is_dir():
            present = [f for f in TOKENIZER_FILES if (p / f).exists()]
            if not present:
                continue
            _check_json(p / "tokenizer.json", "the tokenizer")
            _check_json(p / "tokenizer_config.json", "the tokenizer config")
            try:
                return AutoTokenizer.from_pretrained(str(p))
            except Exception as exc:  # tokenizers raises its own Exception subclass for broken files
                raise CheckpointError(
                    f"{p}: its tokenizer ({', '.join(present)}) does not load ({first_line(exc)}); "
                    "restore the file or delete it to use the base model's tokenizer"
                ) from exc
        try:
            return AutoTokenizer.from_pretrained(str(c))
        except (OSError, ValueError) as exc:
            errors.append(f"{c}: {first_line(exc)}")
    raise CheckpointError(
        "no tokenizer found in " + ", ".join(str(c) for c in candidates if c) + "; " + "; ".join(errors)
    )


def _check_json(path: Path, what: str) -> dict | None:
    """Parsed JSON of `path` if it exists; a broken file is a one-line error naming it."""
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(
            f"{path}: {what} is not valid JSON ({first_line(exc)}); re-download or re-save the checkpoint"
        ) from exc
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: {what} must be a JSON object, got {type(data).__name__}")
    return data


def is_adapter(folder: Path) -> bool:
    """Whether `folder` holds a LoRA adapter; a half-written one is an error naming what is missing."""
    folder = Path(folder)
    has_config = (folder / C.ADAPTER_CONFIG_FILE).exists()
    weights = [f for f in ADAPTER_WEIGHT_FILES if (folder / f).exists()]
    if not has_config and not weights:
        return False
    if not has_config:
        raise CheckpointError(
            f"{folder}: adapter weights ({weights[0]}) without {C.ADAPTER_CONFIG_FILE}; the adapter cannot be "
            "rebuilt without its config: restore it"
        )
    _check_json(folder / C.ADAPTER_CONFIG_FILE, "the adapter config")
    if not weights:
        raise CheckpointError(
            f"{folder}: {C.ADAPTER_CONFIG_FILE} but no adapter weights ({' or '.join(ADAPTER_WEIGHT_FILES)}); "
            "the upload is incomplete: restore the weights"
        )
    return True


def adapter_config(folder: Path) -> dict:
    return _check_json(Path(folder) / C.ADAPTER_CONFIG_FILE, "the adapter config") or {}


def adapter_base(folder: Path) -> str | None:
    return adapter_config(folder).get("base_model_name_or_path")


def attach_adapter(
    model: nn.Module, folder: Path, name: str, kept_blocks: int | None = None, is_trainable: bool = False
) -> nn.Module:
    """Load the LoRA adapter in `folder` onto `model` under `name`; `kept_blocks` silences peft's
    warning about the blocks a truncated AR lacks by design."""
    from peft import PeftModel
    from safetensors import SafetensorError

    adapter_check.check_config(folder, adapter_config(folder))
    keys = adapter_check.file_keys(folder)
    try:
        with warnings.catch_warnings(record=True) as caught:  # the caller's filters still apply
            kw = dict(adapter_name=name, is_trainable=is_trainable)
            if isinstance(model, PeftModel):
                model.load_adapter(str(folder), **kw)
            else:
                model = PeftModel.from_pretrained(model, str(folder), **kw)
        if keys is not None:  # before peft's warnings: a renamed adapter is an error, not a warning
            adapter_check.check_all_loaded(model, name, folder, keys)
        for w in caught:
            if not _beyond_kept_blocks(str(w.message), kept_blocks):
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    except CheckpointError:
        raise
    except (SafetensorError, OSError, ValueError, RuntimeError, KeyError) as exc:  # broken file, shapes
        raise CheckpointError(
            f"{folder}: the LoRA adapter ({C.ADAPTER_CONFIG_FILE} + {C.ADAPTER_WEIGHTS_FILE}) does not load onto "
            f"its base ({first_line(exc)}); check that the weights are complete and that base_model is the one "
            "it was trained on"
        ) from exc
    return model


_MISSING_KEYS = "Found missing adapter keys while loading the checkpoint: "
_BLOCK = re.compile(r"\.layers\.(\d+)\.")


def _beyond_kept_blocks(message: str, kept_blocks: int | None) -> bool:
    """Whether `message` is peft's missing-keys warning naming only blocks at or past `kept_blocks`."""
    if kept_blocks is None or not message.startswith(_MISSING_KEYS):
        return False
    keys = re.findall(r"'([^']+)'", message[len(_MISSING_KEYS) :])
    blocks = [_BLOCK.search(k) for k in keys]
    return bool(keys) and all(b is not None and int(b.group(1)) >= kept_blocks for b in blocks)


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
