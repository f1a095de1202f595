"""Round-trip metrics in numpy on float64 copies (so the numbers do not depend on the model's dtype):
per-row cosine and normalised MSE, seeded bootstrap summaries, FVE with its predict-the-mean baseline, a
noise floor measured on the data, and `to_plain`, which writes every eval section as JSON."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from hubkit import metrics as core
from hubkit.errors import DataError

DEFAULT_BOOT = 2000
CONFIDENCE = 0.95
# Above this many (reconstruction, other vector) pairs the noise floor samples other rows per row.
MAX_FLOOR_PAIRS = 4_000_000


def as_matrix(x, name: str = "vectors") -> np.ndarray:
    """`x` as a float64 ``[N, d]`` array; refuses other ranks and non-finite values."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().float().numpy()
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2:
        raise DataError(f"{name} must have shape [N, d], got {a.shape}")
    if not np.isfinite(a).all():
        bad = np.nonzero(~np.isfinite(a).all(axis=1))[0][:10].tolist()
        raise DataError(f"{name} hold NaN or inf in rows {bad}")
    return a


def unit_rows(a: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (an all-zero row stays zero, so its cosine with anything is 0)."""
    return core.unit_rows(torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64))).numpy()


def as_pair(v, v_hat) -> tuple[np.ndarray, np.ndarray]:
    """(vectors, reconstructions) as float64 ``[N, d]`` arrays of the same shape."""
    a, b = as_matrix(v, "vectors"), as_matrix(v_hat, "reconstructions")
    if a.shape != b.shape:
        raise DataError(f"vectors {a.shape} and reconstructions {b.shape} differ in shape")
    return a, b


def cosine_rows(v, v_hat) -> np.ndarray:
    """Per-row cosine between each vector and its reconstruction."""
    a, b = as_pair(v, v_hat)
    return core.cosine(torch.from_numpy(a), torch.from_numpy(b)).numpy()


def nmse_rows(v, v_hat) -> np.ndarray:
    """Per-row normalised MSE ``‖v/‖v‖ − v̂/‖v̂‖‖²`` (= ``2(1 − cos)``; the per-element MSE at ``mse_scale = sqrt(d)``)."""
    a, b = as_pair(v, v_hat)
    return core.normalised_mse(torch.from_numpy(a), torch.from_numpy(b)).numpy()


# -- bootstrap --------------------------------------------------------------------------------------
def bootstrap_ci(
    values,
    stat: Callable[[np.ndarray], np.ndarray] | None = None,
    n_boot: int = DEFAULT_BOOT,
    seed: int = 0,
) -> tuple[float, float]:
    """Seeded percentile bootstrap interval of the mean (or of `stat`, mapping ``[B, n]`` resamples to ``[B]``)."""
    x = np.asarray(values, dtype=np.float64).ravel()
    if x.size < 2:
        raise DataError(f"a bootstrap interval needs at least 2 values, got {x.size}")
    rng = np.random.default_rng(seed)
    stats = np.empty(n_boot)
    step = max(1, 2_000_000 // x.size)
    for start in range(0, n_boot, step):
        idx = rng.integers(0, x.size, size=(min(step, n_boot - start), x.size))
        stats[start : start + len(idx)] = x[idx].mean(axis=1) if stat is None else stat(x[idx])
    tail = (1.0 - CONFIDENCE) / 2.0
    lo, hi = np.quantile(stats, [tail, 1.0 - tail])
    return float(lo), float(hi)


@dataclass
class Summary:
    """Distribution of a per-row figure: mean with its bootstrap interval, std, median, min, max."""

    n: int
    mean: float | None
    ci_low: float | None
    ci_high: float | None
    std: float | None
    median: float | None
    min: float | None
    max: float | None


def summarize(values, n_boot: int = DEFAULT_BOOT, seed: int = 0) -> Summary:
    """`Summary` of `values`; figures that need more rows than given are ``None`` (n=0: all; n=1: interval, std)."""
    x = np.asarray(values, dtype=np.float64).ravel()
    if x.size == 0:
        return Summary(0, None, None, None, None, None, None, None)
    lo = hi = std = None
    if x.size >= 2:
        lo, hi = bootstrap_ci(x, n_boot=n_boot, seed=seed)
        std = float(x.std(ddof=1))
    return Summary(
        n=int(x.size),
        mean=float(x.mean()),
        ci_low=lo,
        ci_high=hi,
        std=std,
        median=float(np.median(x)),
        min=float(x.min()),
        max=float(x.max()),
    )


# -- FVE --------------------------------------------------------------------------------------------
@dataclass
class FVE:
    """Fraction of variance explained ``1 − mean(nmse) / B`` with its interval; ``B`` is the predict-the-mean baseline."""

    n: int
    value: float | None
    ci_low: float | None
    ci_high: float | None
    baseline_b: float | None
    mean_nmse: float | None


def _fve_parts(v, v_hat) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(unit vectors ``u``, per-row squared error ``‖u − û‖²``, per-row ``‖u‖²``) for FVE and its bootstrap."""
    a, b = as_pair(v, v_hat)
    u, uh = unit_rows(a), unit_rows(b)
    return u, np.sum((u - uh) ** 2, axis=1), np.sum(u**2, axis=1)


def _boot_fve(
    u: np.ndarray, sq: np.ndarray, errs: list[np.ndarray], n_boot: int, seed: int
) -> list[np.ndarray]:
    """Per-resample FVE of each error column in `errs`, rows resampled together (``B`` recomputed each time)."""
    n = u.shape[0]
    rng = np.random.default_rng(seed)
    out: list[list[np.ndarray]] = [[] for _ in errs]
    step = max(1, 2_000_000 // max(n, u.shape[1]))
    for start in range(0, n_boot, step):
        k = min(step, n_boot - start)
        counts = np.stack([np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(k)]).astype(
            np.float64
        )
        mean_u = counts @ u / n  # [k, d]
        b_s = counts @ sq / n - np.sum(mean_u**2, axis=1)
        for col, err in zip(out, errs):
            with np.errstate(divide="ignore", invalid="ignore"):
                col.append(np.where(b_s > 0, 1.0 - (counts @ err / n) / b_s, np.nan))
    return [np.concatenate(c) for c in out]


def _interval(stats: np.ndarray) -> tuple[float | None, float | None]:
    s = stats[np.isfinite(stats)]
    if not s.size:
        return None, None
    tail = (1.0 - CONFIDENCE) / 2.0
    lo, hi = np.quantile(s, [tail, 1.0 - tail])
    return float(lo), float(hi)


def fve(v, v_hat, n_boot: int = DEFAULT_BOOT, seed: int = 0) -> FVE:
    """FVE of the normalised vectors; ``B`` = mean squared distance of the unit vectors from their mean (the
    interval recomputes both the MSE and ``B`` on each resample of rows)."""
    u, err, sq = _fve_parts(v, v_hat)
    n = u.shape[0]
    if n < 2:
        return FVE(n, None, None, None, None, None)
    base = float(np.mean(np.sum((u - u.mean(axis=0)) ** 2, axis=1)))
    if base <= 0:
        return FVE(n, None, None, None, base, float(err.mean()))
    lo, hi = _interval(_boot_fve(u, sq, [err], n_boot, seed)[0])
    return FVE(n, 1.0 - float(err.mean()) / base, lo, hi, base, float(err.mean()))


@dataclass
class FVEChange:
    """FVE of one set of reconstructions against another on the same vectors, with a paired interval."""

    n: int
    before: float | None
    after: float | None
    delta: float | None  # after − before
    ci_low: float | None
    ci_high: float | None
    baseline_b: float | None


def fve_change(v, v_hat_before, v_hat_after, n_boot: int = DEFAULT_BOOT, seed: int = 0) -> FVEChange:
    """``FVE(after) − FVE(before)``; each resample of rows recomputes both FVEs and ``B`` together."""
    u, err_a, sq = _fve_parts(v, v_hat_before)
    _, err_b, _ = _fve_parts(v, v_hat_after)
    n = u.shape[0]
    if n < 2:
        return FVEChange(n, None, None, None, None, None, None)
    base = float(np.mean(np.sum((u - u.mean(axis=0)) ** 2, axis=1)))
    if base <= 0:
        return FVEChange(n, None, None, None, None, None, base)
    before, after = 1.0 - float(err_a.mean()) / base, 1.0 - float(err_b.mean()) / base
    s_a, s_b = _boot_fve(u, sq, [err_a, err_b], n_boot, seed)
    lo, hi = _interval(s_b - s_a)
    return FVEChange(n, before, after, after - before, lo, hi, base)


# -- noise floor ------------------------------------------------------------------------------------
@dataclass
class NoiseFloor:
    """Cosines of reconstructions against the vectors of *other* rows: what any output would score.

    ``p95`` is the floor a row must beat; ``frac_above`` is the share of rows whose own cosine does.
    An AR that ignores its input puts about 5% of rows above it, by construction.
    """

    n_pairs: int
    sampled: bool
    mean: float
    std: float
    p95: float
    frac_above: float
    frac_above_mean: float


def mismatched_cosines(v, v_hat, max_pairs: int = MAX_FLOOR_PAIRS, seed: int = 0) -> tuple[np.ndarray, bool]:
    """``cos(v̂_i, v_j)`` for ``j ≠ i``: all pairs when there are at most `max_pairs`, else a seeded sample per row."""
    a, b = as_pair(v, v_hat)
    n = a.shape[0]
    if n < 2:
        raise DataError(f"a noise floor needs at least 2 rows, got {n}")
    u, uh = unit_rows(a), unit_rows(b)
    if n * (n - 1) <= max_pairs:
        return (uh @ u.T)[~np.eye(n, dtype=bool)], False
    m = max(1, max_pairs // n)
    rng = np.random.default_rng(seed)
    out = np.empty((n, m))
    for i in range(n):
        others = rng.choice(n - 1, size=m, replace=False)
        others[others >= i] += 1
        out[i] = u[others] @ uh[i]
    return out.ravel(), True


def noise_floor(v, v_hat, max_pairs: int = MAX_FLOOR_PAIRS, seed: int = 0) -> NoiseFloor:
    """`NoiseFloor` for a round trip: the mismatched-cosine distribution and the share of rows above it."""
    off, sampled = mismatched_cosines(v, v_hat, max_pairs=max_pairs, seed=seed)
    own = cosine_rows(v, v_hat)
    p95 = float(np.quantile(off, 0.95))
    mean = float(off.mean())
    return NoiseFloor(
        n_pairs=int(off.size),
        sampled=sampled,
        mean=mean,
        std=float(off.std()),
        p95=p95,
        frac_above=float(np.mean(own > p95)),
        frac_above_mean=float(np.mean(own > mean)),
    )


class Plain:
    """A dataclass that serialises field by field with `to_plain`."""

    def to_dict(self) -> dict:
        return to_plain(self)


def to_plain(obj: Any) -> Any:
    """JSON-ready data: dataclass fields in order, less ``repr=False`` fields (per-row arrays, texts: they go
    to rows.parquet) and the ``None`` fields a class lists in ``omit_none``; non-finite floats become
    ``None`` and numpy scalars Python numbers."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        omit = getattr(obj, "omit_none", ())
        return {
            f.name: to_plain(getattr(obj, f.name))
            for f in dataclasses.fields(obj)
            if f.repr and not (f.name in omit and getattr(obj, f.name) is None)
        }
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
