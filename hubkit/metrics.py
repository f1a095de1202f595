"""Round-trip metrics, defined once: cosine, normalised MSE and FVE of ``v`` against ``v̂``.

Both vectors are L2-normalised before comparing (the ``mse_scale`` space divided by the scale²), so
``normalised_mse = ‖v/‖v‖ − v̂/‖v̂‖‖² = 2(1 − cos)``. FVE is ``1 − mean(normalised_mse) / B``, where
``B`` is the mean squared distance of the unit targets from their mean (the predict-the-mean baseline).
Inputs are ``[N, d]`` tensors of any float dtype; per-row results are ``[N]``, float64 for float64
inputs (the eval statistics) and float32 otherwise.
"""

from __future__ import annotations

import torch
from torch import Tensor

EPS = 1e-12


def unit_rows(v: Tensor) -> Tensor:
    """Rows divided by their L2 norm (float64 stays float64, anything else becomes float32; an all-zero
    row stays zero)."""
    v = v if v.dtype == torch.float64 else v.float()
    return v / v.norm(dim=-1, keepdim=True).clamp_min(EPS)


def cosine(v: Tensor, v_hat: Tensor) -> Tensor:
    """Per-row cosine similarity ``[N]``."""
    return (unit_rows(v) * unit_rows(v_hat)).sum(dim=-1)


def normalised_mse(v: Tensor, v_hat: Tensor) -> Tensor:
    """Per-row ``‖v/‖v‖ − v̂/‖v̂‖‖²`` ``[N]`` (= the MSE at scale ``sqrt(d)`` = ``2(1 − cos)``); differentiable."""
    return ((unit_rows(v) - unit_rows(v_hat)) ** 2).sum(dim=-1)


def mean_baseline(v: Tensor) -> float:
    """``B``: mean squared distance of the unit rows of `v` from their mean (what predicting the mean scores)."""
    u = unit_rows(v).double()
    return float(((u - u.mean(dim=0)) ** 2).sum(dim=-1).mean())


def fve(v: Tensor, v_hat: Tensor, baseline: float | None = None) -> float:
    """Fraction of variance explained ``1 − mean(normalised_mse) / B``; `baseline` defaults to `mean_baseline(v)`.

    Needs at least two rows (or a given baseline) and a nonzero ``B``."""
    b = mean_baseline(v) if baseline is None else baseline
    if b <= 0:
        raise ValueError("FVE needs targets that differ (the predict-the-mean baseline B is 0)")
    return 1.0 - float(normalised_mse(v, v_hat).double().mean()) / b
