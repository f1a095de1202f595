"""Vectors in, vectors written: validation, scaling and the two row edits (pure tensor functions).

Positions are ``[N]`` (one marker per row) or ``[N, k]`` (k markers, in order); vectors are
``[N, d]`` or ``[N, k, d]`` to match.
"""

from __future__ import annotations

import torch
from torch import Tensor

from hubkit.errors import InjectionError
from hubkit.vectors import extreme_message, unmeasurable_rows


def check_vectors(vectors: Tensor, d_model: int, allow_slots: bool = False) -> Tensor:
    """Return `vectors` as float32 ``[N, d]`` (or ``[N, k, d]`` when `allow_slots`); refuse wrong
    width, NaN/inf and all-zero vectors, naming the rows."""
    if not isinstance(vectors, Tensor):
        vectors = torch.as_tensor(vectors)
    if vectors.ndim == 1:
        vectors = vectors[None]
    shape = f"[N, {d_model}]" + (f" or [N, k, {d_model}]" if allow_slots else "")
    if vectors.ndim != 2 and not (allow_slots and vectors.ndim == 3):
        raise InjectionError(f"vectors must have shape {shape}, got {tuple(vectors.shape)}")
    if vectors.shape[-1] != d_model:
        raise InjectionError(
            f"vectors have width {vectors.shape[-1]} but this NLA reads d_model={d_model}; "
            "extract them at the NLA's layer from its base model"
        )
    if vectors.shape[0] == 0 or (vectors.ndim == 3 and vectors.shape[1] == 0):
        raise InjectionError(f"no vectors given (N = 0): shape {tuple(vectors.shape)}")
    v = vectors.detach().float()
    flat = v.reshape(v.shape[0], -1, d_model)
    bad = (~torch.isfinite(flat)).any(dim=-1).any(dim=-1).nonzero().flatten().tolist()
    if bad:
        raise InjectionError(f"vectors hold NaN or inf in rows {bad[:10]}{' …' if len(bad) > 10 else ''}")
    extreme = unmeasurable_rows(flat)
    if extreme:
        raise InjectionError(f"vectors in {extreme_message(flat, extreme)}")
    zero = (flat.norm(dim=-1) == 0).any(dim=-1).nonzero().flatten().tolist()
    if zero:
        raise InjectionError(
            f"vectors are all-zero in rows {zero[:10]}: a zero vector has no direction to inject"
        )
    return v


def scale_vectors(vectors: Tensor, scale: float | None) -> Tensor:
    """``v · s / ‖v‖`` per vector, or `vectors` unchanged when `scale` is ``None`` (raw)."""
    if scale is None:
        return vectors
    return vectors * (scale / vectors.norm(dim=-1, keepdim=True))


def _slots(positions: Tensor, vectors: Tensor) -> tuple[Tensor, Tensor]:
    """Positions as ``[N, k]`` and vectors as ``[N, k, d]``."""
    if positions.ndim == 1:
        positions = positions[:, None]
    if vectors.ndim == 2:
        vectors = vectors[:, None]
    if positions.shape != vectors.shape[:2]:
        raise InjectionError(
            f"{tuple(vectors.shape[:2])} vectors for {tuple(positions.shape)} marker positions"
        )
    return positions, vectors


def replace_rows(embeds: Tensor, positions: Tensor, vectors: Tensor) -> Tensor:
    """Embeddings with row ``positions[i, j]`` of batch row ``i`` set to ``vectors[i, j]`` (new tensor)."""
    pos, vec = _slots(positions.to(embeds.device), vectors)
    out = embeds.clone()
    rows = torch.arange(embeds.shape[0], device=embeds.device)[:, None].expand_as(pos)
    out[rows, pos] = vec.to(device=embeds.device, dtype=embeds.dtype)
    return out


def add_norm_matched(hidden: Tensor, positions: Tensor, vectors: Tensor) -> Tensor:
    """``h_p + ‖h_p‖ · v/‖v‖`` at each slot's position (new tensor)."""
    pos, vec = _slots(positions.to(hidden.device), vectors)
    out = hidden.clone()
    rows = torch.arange(hidden.shape[0], device=hidden.device)[:, None].expand_as(pos)
    h = hidden[rows, pos].float()
    unit = vec.to(hidden.device).float()
    unit = unit / unit.norm(dim=-1, keepdim=True)
    out[rows, pos] = (h + h.norm(dim=-1, keepdim=True) * unit).to(hidden.dtype)
    return out
