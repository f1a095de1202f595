import math

import numpy as np
import pytest
import torch

from hubkit.errors import DataError
from hubkit.eval import metrics as M


def _cos(a, b):
    dot = sum(x * y for x, y in zip(a, b))
    return dot / math.sqrt(sum(x * x for x in a)) / math.sqrt(sum(y * y for y in b))


@pytest.fixture
def data():
    rng = np.random.default_rng(1)
    v = rng.normal(size=(20, 8)) + 0.5
    v_hat = v + rng.normal(scale=0.8, size=v.shape)
    return v, v_hat


def test_cosine_and_nmse_match_explicit_loops(data):
    v, v_hat = data
    cos = M.cosine_rows(v, v_hat)
    want = [_cos(a.tolist(), b.tolist()) for a, b in zip(v, v_hat)]
    np.testing.assert_allclose(cos, want, rtol=1e-12)
    nmse = M.nmse_rows(torch.tensor(v), torch.tensor(v_hat))  # torch in, float32 precision
    want_mse = [
        sum((x / np.linalg.norm(a) - y / np.linalg.norm(b)) ** 2 for x, y in zip(a, b))
        for a, b in zip(v, v_hat)
    ]
    np.testing.assert_allclose(nmse, want_mse, rtol=1e-5)
    np.testing.assert_allclose(M.nmse_rows(v, v_hat), 2 * (1 - cos), atol=1e-12)


def test_bootstrap_interval_is_seeded_and_matches_normal_theory():
    x = np.random.default_rng(2).normal(loc=3.0, scale=2.0, size=400)
    lo, hi = M.bootstrap_ci(x, n_boot=4000, seed=7)
    assert (lo, hi) == M.bootstrap_ci(x, n_boot=4000, seed=7)
    assert (lo, hi) != M.bootstrap_ci(x, n_boot=4000, seed=8)
    half = 1.96 * x.std(ddof=1) / math.sqrt(x.size)
    assert lo < x.mean() < hi
    assert abs((hi - lo) / 2 - half) / half < 0.12
    assert abs((lo + hi) / 2 - x.mean()) < 0.15 * half


def test_bootstrap_of_other_statistic():
    x = np.arange(101, dtype=float)
    lo, hi = M.bootstrap_ci(x, stat=lambda s: np.median(s, axis=1), n_boot=500, seed=0)
    assert lo < 50 < hi


def test_summary_fields_against_numpy():
    x = np.random.default_rng(3).uniform(-1, 1, size=50)
    s = M.summarize(x, n_boot=300, seed=0)
    assert s.n == 50
    assert s.mean == pytest.approx(float(np.mean(x)))
    assert s.std == pytest.approx(float(np.std(x, ddof=1)))
    assert s.median == pytest.approx(float(np.median(x)))
    assert (s.min, s.max) == (float(x.min()), float(x.max()))
    assert s.ci_low < s.mean < s.ci_high


def test_summary_of_too_few_values_leaves_undefined_figures_empty():
    assert M.summarize([]).mean is None
    one = M.summarize([0.5])
    assert one.mean == 0.5 and one.ci_low is None and one.std is None
    with pytest.raises(DataError, match="at least 2"):
        M.bootstrap_ci([1.0])


def test_fve_against_independent_formula(data):
    v, v_hat = data
    u = v / np.linalg.norm(v, axis=1, keepdims=True)
    uh = v_hat / np.linalg.norm(v_hat, axis=1, keepdims=True)
    want = 1 - np.sum((u - uh) ** 2) / np.sum((u - u.mean(0)) ** 2)
    f = M.fve(v, v_hat, n_boot=500, seed=0)
    assert f.value == pytest.approx(want, rel=1e-10)
    assert f.baseline_b == pytest.approx(np.mean(np.sum((u - u.mean(0)) ** 2, axis=1)))
    assert f.ci_low < f.value < f.ci_high


def test_fve_perfect_and_predict_the_mean_direction(data):
    v, _ = data
    assert M.fve(v, 3 * v, n_boot=100).value == pytest.approx(1.0)
    u = v / np.linalg.norm(v, axis=1, keepdims=True)
    m = np.linalg.norm(u.mean(0))
    const = np.tile(u.mean(0), (len(v), 1))
    # For unit vectors: mean ||u - c||² = 2 - 2m and B = 1 - m², so FVE = (m - 1) / (m + 1).
    assert M.fve(v, const, n_boot=100).value == pytest.approx((m - 1) / (m + 1), rel=1e-9)
    assert M.fve(v, const, n_boot=100).baseline_b == pytest.approx(1 - m * m, rel=1e-9)


def test_noise_floor_against_double_loop(data):
    v, v_hat = data
    n = len(v)
    off = [_cos(v_hat[i].tolist(), v[j].tolist()) for i in range(n) for j in range(n) if i != j]
    own = [_cos(v_hat[i].tolist(), v[i].tolist()) for i in range(n)]
    fl = M.noise_floor(v, v_hat)
    assert fl.n_pairs == n * (n - 1) and not fl.sampled
    assert fl.mean == pytest.approx(np.mean(off))
    assert fl.p95 == pytest.approx(np.quantile(off, 0.95))
    assert fl.frac_above == pytest.approx(np.mean(np.array(own) > np.quantile(off, 0.95)))


def test_noise_floor_sampling_uses_only_other_rows(data):
    v, v_hat = data
    full = M.cosine_rows(np.repeat(v_hat, len(v), 0), np.tile(v, (len(v), 1))).reshape(len(v), len(v))
    allowed = set(np.round(full[~np.eye(len(v), dtype=bool)], 12))
    vals, sampled = M.mismatched_cosines(v, v_hat, max_pairs=100, seed=3)
    assert sampled and vals.size == len(v) * (100 // len(v))
    assert set(np.round(vals, 12)) <= allowed


def test_bad_shapes_and_values_are_refused(data):
    v, v_hat = data
    with pytest.raises(DataError, match="differ in shape"):
        M.cosine_rows(v, v_hat[:, :4])
    bad = v.copy()
    bad[3, 0] = np.nan
    with pytest.raises(DataError, match=r"NaN or inf in rows \[3\]"):
        M.cosine_rows(bad, v_hat)
    with pytest.raises(DataError, match="shape"):
        M.cosine_rows(v[0], v_hat[0])
    with pytest.raises(DataError, match="at least 2 rows"):
        M.noise_floor(v[:1], v_hat[:1])
