"""hubkit.metrics against hand computations in float64 (numpy), and the identities the design states."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hubkit import metrics


def _pair(n: int = 6, d: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(n, d, generator=g) * torch.rand(n, 1, generator=g) * 50
    return v, v + torch.randn(n, d, generator=g) * 20


def test_cosine_and_normalised_mse_match_numpy() -> None:
    v, w = _pair()
    a, b = v.double().numpy(), w.double().numpy()
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    d = a.shape[1]
    sa = a / np.linalg.norm(a, axis=1, keepdims=True) * np.sqrt(d)
    sb = b / np.linalg.norm(b, axis=1, keepdims=True) * np.sqrt(d)
    mse_at_sqrt_d = ((sa - sb) ** 2).mean(1)  # MSE at mse_scale = sqrt(d), divided by scale² · d / d
    np.testing.assert_allclose(metrics.cosine(v, w).numpy(), cos, rtol=1e-5)
    np.testing.assert_allclose(metrics.normalised_mse(v, w).numpy(), mse_at_sqrt_d, rtol=1e-4)
    np.testing.assert_allclose(metrics.normalised_mse(v, w).numpy(), 2 * (1 - cos), rtol=1e-4, atol=1e-6)


def test_fve_is_one_minus_mse_over_the_mean_baseline() -> None:
    v, w = _pair()
    u = v.double().numpy()
    u = u / np.linalg.norm(u, axis=1, keepdims=True)
    uh = w.double().numpy()
    uh = uh / np.linalg.norm(uh, axis=1, keepdims=True)
    base = ((u - u.mean(0)) ** 2).sum(1).mean()
    assert metrics.mean_baseline(v) == pytest.approx(base, rel=1e-6)
    assert metrics.fve(v, w) == pytest.approx(1 - ((u - uh) ** 2).sum(1).mean() / base, rel=1e-5)
    assert metrics.fve(v, v) == pytest.approx(1.0, abs=1e-6)


def test_fve_refuses_identical_targets() -> None:
    v = torch.ones(3, 4)
    with pytest.raises(ValueError, match="baseline"):
        metrics.fve(v, v)


def test_normalised_mse_is_differentiable() -> None:
    v, w = _pair()
    w.requires_grad_(True)
    metrics.normalised_mse(v, w).sum().backward()
    assert w.grad is not None and torch.isfinite(w.grad).all()
