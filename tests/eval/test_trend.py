import numpy as np
import pytest

from hubkit.errors import DataError
from hubkit.eval.trend import trend


def _fit(x, y):
    slope, intercept = np.polyfit(x, y, 1)
    r2 = np.corrcoef(x, y)[0, 1] ** 2
    return slope, intercept, r2


def test_descending_curve():
    rng = np.random.default_rng(0)
    x = np.arange(0, 200, 5.0)
    y = 3.0 - 0.01 * x + rng.normal(scale=0.05, size=x.size)
    t = trend(x, y)
    slope, intercept, r2 = _fit(x, y)
    assert t.verdict == "descending"
    assert (
        t.slope == pytest.approx(slope)
        and t.intercept == pytest.approx(intercept)
        and t.r2 == pytest.approx(r2)
    )


def test_flat_noise_is_flat():
    rng = np.random.default_rng(1)
    x = np.arange(100.0)
    y = 2.0 + rng.normal(scale=0.1, size=100)
    t = trend(x, y)
    assert t.verdict == "flat"
    assert t.r2 == pytest.approx(_fit(x, y)[2]) and t.slope == pytest.approx(_fit(x, y)[0])


def test_shallow_slope_is_flat_even_with_perfect_fit():
    x = np.arange(100.0)
    t = trend(x, 2.0 - 0.001 * x)
    assert t.r2 == pytest.approx(1.0) and t.slope == pytest.approx(-0.001)
    assert t.verdict == "flat"


def test_steep_but_noisy_is_flat():
    rng = np.random.default_rng(2)
    x = np.arange(60.0)
    noise = rng.normal(scale=2.0, size=x.size)
    xc = x - x.mean()
    noise -= noise.mean() + xc * (noise @ xc) / (xc @ xc)  # orthogonal to the line: slope stays exact
    y = 2.0 - 0.01 * x + noise
    t = trend(x, y)
    assert t.slope == pytest.approx(-0.01)
    assert t.r2 == pytest.approx(_fit(x, y)[2])
    assert t.r2 < 0.10 and t.verdict == "flat"


def test_boundary_values_are_inclusive():
    x = np.array([0.0, 1.0, 2.0, 3.0])
    t = trend(x, 1.0 - 0.002 * x)
    assert t.verdict == "descending"
    assert trend(x, 1.0 - 0.002 * x, slope_max=-0.0021).verdict == "flat"


def test_constant_curve_has_zero_r2():
    t = trend([1, 2, 3], [0.5, 0.5, 0.5])
    assert t.slope == 0.0 and t.r2 == 0.0 and t.verdict == "flat"


def test_bad_curves_are_refused():
    with pytest.raises(DataError, match="at least 3"):
        trend([1, 2], [1.0, 0.5])
    with pytest.raises(DataError, match="NaN"):
        trend([1, 2, 3], [1.0, float("nan"), 0.5])
    with pytest.raises(DataError, match="same step"):
        trend([5, 5, 5], [1.0, 0.9, 0.8])
    with pytest.raises(DataError, match="as many steps"):
        trend([1, 2, 3], [1.0, 0.9])
