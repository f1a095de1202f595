"""Vectors written: scaling and the two row edits (pure tensor functions; `hubkit.vectors.check_vectors`
validates what comes in).

Positions are ``[N]`` (one marker per row) or ``[N, k]`` (k markers, in order); vectors are
``[N, d]`` or ``[N, k, d]`` to match.
"""

from __future__ import annotations

import torch
from torch import Tensor

from hubkit.errors import InjectionError


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
