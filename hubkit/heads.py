"""The AR's ``Linear(d, d)`` head: read ``value_head.safetensors``, ``linear_head.pt`` (with
``weights_only=True``: a pickle that carries code is refused) or ``ar_lora_value_head.safetensors``;
write safetensors only.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from hubkit import constants as C
from hubkit.constants import HEAD_FILES
from hubkit.errors import CheckpointError, first_line


def identity_head(d_model: int, bias: bool = False) -> nn.Linear:
    head = nn.Linear(d_model, d_model, bias=bias)
    nn.init.eye_(head.weight)
    if bias:
        nn.init.zeros_(head.bias)
    return head


def read_state(path: Path) -> dict[str, torch.Tensor]:
    """All tensors of a head file; `.pt` files are unpickled with ``weights_only=True``."""
    if not path.exists():
        raise CheckpointError(f"{path}: AR head file is missing; the meta's `ar.head_format` expects it here")
    if path.suffix == ".pt":
        try:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as exc:  # UnpicklingError and friends: refuse, never execute
            raise CheckpointError(
                f"{path}: refused to load: the pickle holds more than tensors ({first_line(exc)}). Only plain "
                "state_dicts are read; convert it to safetensors"
            ) from exc
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise CheckpointError(f"{path}: expected a state_dict of tensors, got {type(state).__name__}")
        return dict(state)
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:  # truncated file, bad header
        raise CheckpointError(
            f"{path}: not a readable safetensors file ({first_line(exc)}); the file is truncated or "
            "corrupt: re-download or re-save it"
        ) from exc


def split_head_state(
    state: dict[str, torch.Tensor], path: Path
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(head tensors as ``weight``/``bias``, the remaining LoRA tensors) from one file's state."""
    head, rest = {}, {}
    for key, tensor in state.items():
        if "lora_" in key:
            rest[key] = tensor
            continue
        name = key.rsplit(".", 1)[-1]
        if name not in ("weight", "bias"):
            raise CheckpointError(f"{path}: unexpected tensor {key!r} in the head file")
        if name in head:
            raise CheckpointError(f"{path}: more than one head `{name}` ({key!r}); keep one")
        head[name] = tensor
    if "weight" not in head:
        raise CheckpointError(f"{path}: no head `weight` tensor (keys: {sorted(state)[:8]})")
    return head, rest


def load_head(
    folder: Path, head_format: str, d_model: int, bias: bool | None = None
) -> tuple[nn.Linear, dict]:
    """The head as a float32 ``nn.Linear`` plus any LoRA tensors stored in the same file."""
    path = folder / HEAD_FILES[head_format]
    head_state, lora_state = split_head_state(read_state(path), path)
    w = head_state["weight"]
    odd = sorted(k for k, t in head_state.items() if not t.is_floating_point())
    if odd:
        raise CheckpointError(
            f"{path}: head `{odd[0]}` is stored as {head_state[odd[0]].dtype}, not a floating-point type; "
            "the file is a bad conversion: re-save the head as float32"
        )
    if tuple(w.shape) != (d_model, d_model):
        raise CheckpointError(
            f"{path}: head weight has shape {tuple(w.shape)}, expected ({d_model}, {d_model}) for d_model={d_model}"
        )
    has_bias = "bias" in head_state
    if bias is not None and bias != has_bias:
        raise CheckpointError(
            f"{path}: meta says head_bias={bias} but the file {'has' if has_bias else 'lacks'} a bias"
        )
    if has_bias and tuple(head_state["bias"].shape) != (d_model,):
        raise CheckpointError(
            f"{path}: head bias has shape {tuple(head_state['bias'].shape)}, expected ({d_model},)"
        )
    for name, tensor in head_state.items():
        if bad := int((~torch.isfinite(tensor.float())).sum()):
            raise CheckpointError(
                f"{path}: head `{name}` holds {bad} NaN/inf values; the checkpoint is broken (a diverged "
                "training step or a bad conversion): use an earlier checkpoint"
            )
    head = nn.Linear(d_model, d_model, bias=has_bias)
    head.load_state_dict({k: v.float() for k, v in head_state.items()})
    return head.float().eval(), lora_state


def save_head(head: nn.Linear | dict[str, torch.Tensor], folder: Path) -> Path:
    """Write the head (a module or its ``weight``/``bias`` tensors) as ``value_head.safetensors``, float32."""
    folder.mkdir(parents=True, exist_ok=True)
    state = head if isinstance(head, dict) else {"weight": head.weight, "bias": head.bias}
    path = folder / C.VALUE_HEAD_FILE
    tensors = {k: v.detach().float().contiguous().cpu() for k, v in state.items() if v is not None}
    save_file(tensors, str(path))
    return path


def save_legacy_pt(head: nn.Linear, folder: Path) -> Path:
    """The legacy ``linear_head.pt`` (tensors only) for tools that still read it; written on request."""
    path = folder / C.LINEAR_HEAD_PT_FILE
    torch.save({k: v.detach().cpu() for k, v in head.state_dict().items()}, str(path))
    return path


def with_bias(head: nn.Linear) -> nn.Linear:
    """`head` as ``Linear(d, d, bias=True)``: a head without bias gets a zero bias (the same function)."""
    if head.bias is not None:
        return head
    biased = nn.Linear(head.in_features, head.out_features, bias=True)
    biased.load_state_dict({"weight": head.weight, "bias": torch.zeros(head.out_features)})
    return biased.eval()


def convert_pt_head(src: Path, dest_folder: Path) -> tuple[Path, bool]:
    """Write a ``linear_head.pt`` as ``value_head.safetensors``; (the written file, whether it has a bias)."""
    state, _ = split_head_state(read_state(src), src)
    return save_head(state, dest_folder), "bias" in state


def write_legacy_pt_from(folder: Path, head_format: str, d_model: int, bias: bool | None = None) -> Path:
    """Write the legacy ``linear_head.pt`` (with a bias) next to the head stored in `folder`."""
    head, _ = load_head(folder, head_format, d_model, bias)
    return save_legacy_pt(with_bias(head), folder)
