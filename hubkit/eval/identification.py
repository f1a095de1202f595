"""Identification: can a reconstruction pick out its own vector among all N?

A row is identified at k when fewer than k *other* vectors have a cosine to its reconstruction at least as
high as its own (ties count against it). Chance is k/N; an AR that writes one vector for everything is at it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from hubkit.errors import DataError
from hubkit.eval.metrics import as_pair, unit_rows

_CHUNK = 1024
KS = (1, 5)  # the top-k identification reports


@dataclass
class TopK:
    k: int
    accuracy: float
    chance: float
    hits: int
    ci_low: float
    ci_high: float
    p_value: float  # one-sided binomial P(hits ≥ observed) under chance


@dataclass
class Identification:
    n: int
    top: list[TopK]
    mean_rank: float  # 0 = own vector ranked first; chance (N−1)/2
    chance_mean_rank: float
    median_rank: float
    mrr: float  # mean reciprocal rank (1-based ranks); chance ≈ H_N / N

    def at(self, k: int) -> TopK:
        for t in self.top:
            if t.k == k:
                return t
        raise KeyError(f"no top-{k} in this identification (have {[t.k for t in self.top]})")


def ranks(v, v_hat) -> np.ndarray:
    """0-based rank of each row's own vector among all vectors, by cosine to its reconstruction (ties pessimistic)."""
    a, b = as_pair(v, v_hat)
    u, uh = unit_rows(a), unit_rows(b)
    n = u.shape[0]
    out = np.empty(n, dtype=np.int64)
    for start in range(0, n, _CHUNK):
        sims = uh[start : start + _CHUNK] @ u.T  # [chunk, N]
        own = sims[np.arange(sims.shape[0]), np.arange(start, start + sims.shape[0])]
        out[start : start + sims.shape[0]] = (sims >= own[:, None]).sum(axis=1) - 1
    return out


def wilson(hits: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson score interval of a proportion (95% by default)."""
    if n == 0:
        return 0.0, 1.0
    p = hits / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def binomial_tail(hits: int, n: int, p: float) -> float:
    """``P(X ≥ hits)`` for ``X ~ Binomial(n, p)``, summed in log space."""
    if hits <= 0 or p >= 1:
        return 1.0
    if p <= 0:
        return 0.0
    logs = [
        math.lgamma(n + 1)
        - math.lgamma(i + 1)
        - math.lgamma(n - i + 1)
        + i * math.log(p)
        + (n - i) * math.log1p(-p)
        for i in range(hits, n + 1)
    ]
    top = max(logs)
    return min(1.0, math.exp(top) * sum(math.exp(x - top) for x in logs))


def identification(v, v_hat) -> Identification:
    """Top-k identification accuracies against chance k/N, with Wilson intervals and binomial p-values."""
    return from_ranks(ranks(v, v_hat))


def from_ranks(r: np.ndarray) -> Identification:
    """`identification` from already computed `ranks`."""
    r = np.asarray(r)
    n = int(r.size)
    if n < max(KS) + 1:
        raise DataError(f"identification at top-{max(KS)} needs more than {max(KS)} rows, got {n}")
    top = []
    for k in KS:
        hits = int(np.sum(r < k))
        low, high = wilson(hits, n)
        p_value = binomial_tail(hits, n, k / n)
        top.append(
            TopK(k=k, accuracy=hits / n, chance=k / n, hits=hits, ci_low=low, ci_high=high, p_value=p_value)
        )
    return Identification(
        n=n,
        top=top,
        mean_rank=float(r.mean()),
        chance_mean_rank=(n - 1) / 2,
        median_rank=float(np.median(r)),
        mrr=float(np.mean(1.0 / (r + 1))),
    )
