import math

import numpy as np
import pytest

from hubkit.errors import DataError
from hubkit.eval.identification import binomial_tail, identification, ranks, wilson


def _brute_ranks(v, v_hat):
    def cos(a, b):
        return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))

    n = len(v)
    return [
        sum(1 for j in range(n) if j != i and cos(v_hat[i], v[j]) >= cos(v_hat[i], v[i])) for i in range(n)
    ]


def test_ranks_against_brute_force():
    rng = np.random.default_rng(0)
    v = rng.normal(size=(30, 16))
    v_hat = v + rng.normal(scale=1.5, size=v.shape)
    assert ranks(v, v_hat).tolist() == _brute_ranks(v, v_hat)


def test_input_blind_reconstruction_identifies_at_chance():
    rng = np.random.default_rng(1)
    v = rng.normal(size=(40, 16)) + 1.0  # shared direction, like real residual streams
    const = np.tile(rng.normal(size=16), (40, 1))
    ident = identification(v, const)
    assert ident.at(1).hits == 1 and ident.at(1).accuracy == pytest.approx(1 / 40)
    assert ident.at(5).hits == 5 and ident.at(5).accuracy == ident.at(5).chance
    assert ident.at(1).p_value > 0.5
    assert ident.mean_rank == pytest.approx(ident.chance_mean_rank)


def test_reading_reconstruction_identifies_far_above_chance():
    rng = np.random.default_rng(2)
    v = rng.normal(size=(40, 16))
    ident = identification(v, v + rng.normal(scale=0.3, size=v.shape))
    assert ident.at(1).accuracy > 0.9
    assert ident.at(1).p_value < 1e-30
    assert ident.mrr > 0.9


def test_ties_count_against_the_row():
    v = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, -1.0], [-1.0, 0.0], [-1.0, 1.0]])
    r = ranks(v, v.copy())
    assert r[0] == 1 and r[1] == 1  # duplicate vectors cannot be told apart


def test_wilson_and_binomial_tail_against_known_values():
    lo, hi = wilson(5, 20)
    assert lo == pytest.approx(0.1119, abs=1e-4) and hi == pytest.approx(0.4687, abs=1e-4)
    n, p = 30, 0.1
    want = sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(7, n + 1))
    assert binomial_tail(7, n, p) == pytest.approx(want, rel=1e-10)
    assert binomial_tail(0, n, p) == 1.0


def test_too_few_rows_for_top5():
    v = np.random.default_rng(3).normal(size=(5, 4))
    with pytest.raises(DataError, match="more than 5 rows"):
        identification(v, v)
