"""Training-trend verdict: a least-squares line through (step, loss); ``descending`` when the slope is at most
`SLOPE_MAX` and R² at least `R2_MIN`, else ``flat``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hubkit.errors import DataError

SLOPE_MAX = -0.002
R2_MIN = 0.10
MIN_POINTS = 3


@dataclass
class Trend:
    verdict: str  # "descending" | "flat"
    slope: float  # loss per step
    intercept: float
    r2: float
    n_points: int
    first_step: float
    last_step: float
    slope_max: float = SLOPE_MAX
    r2_min: float = R2_MIN


def trend(steps, losses, slope_max: float = SLOPE_MAX, r2_min: float = R2_MIN) -> Trend:
    """Fit ``loss ≈ slope · step + intercept`` and give the verdict; needs 3+ finite points over 2+ steps."""
    x = np.asarray(steps, dtype=np.float64).ravel()
    y = np.asarray(losses, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise DataError(f"a loss curve needs as many steps as losses, got {x.size} and {y.size}")
    keep = np.isfinite(x) & np.isfinite(y)
    if (~keep).any():
        raise DataError(f"the loss curve holds NaN or inf at steps {x[~keep][:5].tolist()}")
    if x.size < MIN_POINTS:
        raise DataError(f"a trend verdict needs at least {MIN_POINTS} (step, loss) points, got {x.size}")
    if np.ptp(x) == 0:
        raise DataError("every point of the loss curve has the same step; a slope needs two or more steps")
    xm, ym = x.mean(), y.mean()
    slope = float(np.sum((x - xm) * (y - ym)) / np.sum((x - xm) ** 2))
    intercept = float(ym - slope * xm)
    ss_tot = float(np.sum((y - ym) ** 2))
    ss_res = float(np.sum((y - (slope * x + intercept)) ** 2))
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else 0.0
    verdict = "descending" if slope <= slope_max and r2 >= r2_min else "flat"
    return Trend(
        verdict=verdict,
        slope=slope,
        intercept=intercept,
        r2=r2,
        n_points=int(x.size),
        first_step=float(x.min()),
        last_step=float(x.max()),
        slope_max=slope_max,
        r2_min=r2_min,
    )
