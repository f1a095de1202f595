"""Sharded training with PyTorch FSDP2 (``fully_shard``): each decoder block one unit, then the root.

Gradients are reduce-scattered as a *sum* (the loop divides each loss by the global normaliser, as in
data parallel). Checkpoints stay ordinary: full weights and optimiser state are gathered onto rank 0 in
the single-process format, and put back into each rank's shard on resume, so a step written by N
processes resumes on N processes, or on one.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Iterator
from dataclasses import replace
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard
from torch.distributed.tensor import DTensor, distribute_tensor

from hubkit import arch
from hubkit.errors import HubkitError

QUANTIZED_PARAMS = ("Params4bit", "Int8Params")  # bitsandbytes parameter classes FSDP2 cannot shard


def fsdp_root(model: nn.Module) -> nn.Module:
    """The module FSDP shards as its root: the causal LM itself, under a peft wrapper when there is one
    (``generate`` and ``forward`` both run through it, so its hooks gather the root's weights first)."""
    inner = getattr(model, "get_base_model", None)
    return inner() if callable(inner) else model


def is_sharded(model: nn.Module | None) -> bool:
    return model is not None and isinstance(fsdp_root(model), FSDPModule)


def is_dtensor(t: object) -> bool:
    return isinstance(t, DTensor)


def local(t: Tensor) -> Tensor:
    """This rank's shard of a sharded tensor, else the tensor itself."""
    return t.to_local() if isinstance(t, DTensor) else t


def shard(
    model: nn.Module, param_dtype: torch.dtype | None = None, reshard_after_forward: bool = True
) -> nn.Module:
    """Shard `model` in place (each decoder block, then the root) and return it; classes change,
    identities do not, so every object holding the model keeps working."""
    quantized = sorted({type(p).__name__ for p in model.parameters() if type(p).__name__ in QUANTIZED_PARAMS})
    if quantized:
        raise HubkitError(
            f"distributed.strategy fsdp cannot shard bitsandbytes {', '.join(quantized)} weights (a QLoRA or 8-bit "
            "base): train a LoRA on the unquantized base under fsdp, or the QLoRA under strategy ddp"
        )
    # gathered parameters in `param_dtype` (None: as stored); gradients always reduced in float32
    policy = MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=torch.float32)
    for block in arch.decoder_layers(model):
        fully_shard(block, mp_policy=policy, reshard_after_forward=reshard_after_forward)
    fully_shard(fsdp_root(model), mp_policy=policy, reshard_after_forward=reshard_after_forward)
    for m in model.modules():
        if isinstance(m, FSDPModule):
            m.set_force_sum_reduction_for_comms(True)  # gloo has no pre-multiplied sum
            m.set_gradient_divide_factor(1.0)  # a sum over processes, like `Runner.sync_grads`
    return model


@contextlib.contextmanager
def gathered(model: nn.Module) -> Iterator[None]:
    """Every parameter of a sharded `model` gathered for the block (one collective per unit, at entry).

    Generation runs a different number of forwards on each rank (rows stop at different lengths), so
    it cannot gather block by block; inside this block no collective runs. No-op for a plain model."""
    mods = [m for m in model.modules() if isinstance(m, FSDPModule)] if is_sharded(model) else []
    for m in mods:
        m.set_reshard_after_forward(False, recurse=False)
        m.unshard()
    try:
        yield
    finally:
        for m in mods:
            m.reshard()
            m.set_reshard_after_forward(True, recurse=False)


# -- gradients and checks ---------------------------------------------------------------------------------
def grad_norm_clip(params: Iterable[nn.Parameter], max_norm: float | None) -> float:
    """Global gradient norm over sharded (summed over ranks) and replicated gradients; clip when `max_norm`."""
    grads = [p.grad for p in params if p.grad is not None]
    device = local(grads[0]).device if grads else torch.device("cpu")  # nccl reduces GPU tensors only
    sharded = torch.zeros((), dtype=torch.float64, device=device)
    replicated = torch.zeros((), dtype=torch.float64, device=device)
    for g in grads:
        sq = local(g).detach().double().pow(2).sum().to(device)
        if isinstance(g, DTensor):
            sharded += sq
        else:
            replicated += sq
    if dist.is_initialized():
        dist.all_reduce(sharded)
    total = float(math.sqrt(float(sharded + replicated)))
    if max_norm is not None and total > max_norm:
        coef = max_norm / (total + 1e-6)
        for g in grads:
            local(g).detach().mul_(coef)
    return total


def all_finite(params: Iterable[nn.Parameter]) -> bool:
    """Every weight finite on every rank (one all-reduce, so all ranks agree)."""
    params = list(params)
    ok = all(bool(torch.isfinite(local(p).detach()).all()) for p in params)
    if not dist.is_initialized():
        return ok
    device = local(params[0]).device if params else torch.device("cpu")
    flag = torch.tensor([1 if ok else 0], dtype=torch.int64, device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item())


def local_bytes(model: nn.Module, optimizer: torch.optim.Optimizer | None = None) -> dict[str, int]:
    """Bytes this rank holds of the parameters, their gradients and the optimiser state (local shards)."""

    def size(t: Tensor) -> int:
        t = local(t)
        return t.numel() * t.element_size()

    params = list(model.parameters())
    state = 0
    if optimizer is not None:
        for s in optimizer.state.values():
            state += sum(size(v) for v in s.values() if isinstance(v, Tensor) and v.dim() > 0)
    return {
        "parameters": sum(size(p) for p in params),
        "gradients": sum(size(p.grad) for p in params if p.grad is not None),
        "optimizer": state,
    }


# -- full state on rank 0 ----------------------------------------------------------------------------------
def gathered_for_checkpoint(parts: list, optimizers: dict) -> tuple[list, dict]:
    """A step's parts with their sharded models' full weights attached (`Part.state_dict`; a LoRA's
    adapter only, nothing of the frozen base) and its optimisers' state dicts as one process holds them.
    Every rank takes part in each gather; rank 0 keeps CPU copies, the other ranks None in their place."""
    keep = not dist.is_initialized() or dist.get_rank() == 0

    def whole(t: Any) -> Any:
        if not isinstance(t, Tensor):
            return t
        full = t.full_tensor() if isinstance(t, DTensor) else t
        return full.detach().cpu().clone() if keep else None

    def weights(model: nn.Module, adapter_only: bool) -> dict[str, Tensor]:
        items = model.named_parameters() if adapter_only else model.state_dict().items()
        return {name: whole(t) for name, t in items if t.requires_grad or not adapter_only}

    parts = [
        replace(p, state_dict=weights(p.model, p.adapter_name is not None)) if is_sharded(p.model) else p
        for p in parts
    ]
    full_optimizers = {}
    for key, optimizer in optimizers.items():
        sd = optimizer.state_dict()
        state = {index: {k: whole(v) for k, v in entry.items()} for index, entry in sd["state"].items()}
        full_optimizers[key] = {"state": state, "param_groups": sd["param_groups"]}
    return parts, full_optimizers


def _shard_like(full: Tensor, param: Tensor) -> Tensor:
    """`full` cut as `param` is sharded (each rank slices its own part; no communication)."""
    if not isinstance(param, DTensor) or isinstance(full, DTensor):
        return full
    return distribute_tensor(full.to(param.dtype), param.device_mesh, param.placements, src_data_rank=None)


def attach_full_state_loading(optimizer: torch.optim.Optimizer) -> None:
    """Let `optimizer.load_state_dict` take a full (single-process) state for sharded parameters."""
    params = [p for g in optimizer.param_groups for p in g["params"]]

    def hook(_opt, state_dict: dict) -> dict:
        state = {}
        for index, entry in state_dict["state"].items():
            p = params[int(index)]
            state[index] = {
                k: (_shard_like(v, p) if isinstance(v, Tensor) and v.dim() > 0 else v)
                for k, v in entry.items()
            }
        return {**state_dict, "state": state}

    optimizer.register_load_state_dict_pre_hook(hook)


def load_full_state(model: nn.Module, state: dict[str, Tensor]) -> None:
    """Copy full tensors into the parameters of those names (each rank its shard)."""
    named = dict(model.named_parameters())
    with torch.no_grad():
        for name, full in state.items():
            p = named[name]
            local(p).copy_(local(_shard_like(full.to(p.device), p)))
