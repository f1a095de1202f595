import numpy as np
import pytest

from hubkit.errors import DataError
from hubkit.eval.ablations import (
    CONDITIONS,
    content_sensitivity,
    derangement,
    nonsense_texts,
    reconstruct_unique,
)
from hubkit.eval.identification import identification

from .conftest import ConstantAR, D, OracleAR, blind_real_ar, fitted_ar

EXPL = [f"item number {i} is about topic {chr(97 + i)}" for i in range(12)]


def _cos(a, b):
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


@pytest.fixture
def blind_ar(tiny, metas):
    """A real AR whose head ignores the backbone: weight 0, bias a fixed vector."""
    return blind_real_ar(tiny, metas[1])


@pytest.fixture
def reading_ar(tiny, metas, vectors):
    """A real AR whose head is fitted so that AR(EXPL[i]) = vectors[i]: it can only get there by reading."""
    return fitted_ar(tiny, metas[1], EXPL, vectors)


def test_real_ar_that_ignores_its_input_has_zero_deltas(blind_ar, vectors):
    cs = content_sensitivity(blind_ar, vectors, EXPL, seed=0, n_boot=200)
    assert cs.verdict == "ignores_input"
    for c in cs.controls:
        assert c.delta.mean == pytest.approx(0.0, abs=1e-6)
        assert c.ratio_to_real == pytest.approx(1.0, abs=1e-5)
        assert not c.reads
    assert [c.name for c in cs.controls] == list(CONDITIONS)


def test_real_ar_that_reads_its_input_is_separated(reading_ar, blind_ar, vectors):
    cs = content_sensitivity(reading_ar, vectors, EXPL, seed=0, n_boot=200)
    assert cs.real.mean > 0.99
    assert cs.verdict == "reads_input"
    assert all(c.delta.ci_low > 0.3 for c in cs.controls)
    v_hat = reading_ar.reconstruct(EXPL)
    assert identification(vectors, v_hat).at(1).accuracy == 1.0
    blind = identification(vectors, blind_ar.reconstruct(EXPL))
    assert blind.at(1).accuracy == pytest.approx(1 / len(EXPL))


def test_per_row_controls_against_independent_ar_calls(reading_ar, vectors):
    cs = content_sensitivity(reading_ar, vectors, EXPL, seed=3, n_boot=100)
    empty = reading_ar.reconstruct([""])[0].double().numpy()
    np.testing.assert_allclose(cs.per_row["empty"], [_cos(v, empty) for v in vectors], atol=1e-5)
    for name in ("natural", "nonsense", "other_row"):
        out = reading_ar.reconstruct(cs.texts[name]).double().numpy()
        np.testing.assert_allclose(cs.per_row[name], [_cos(a, b) for a, b in zip(vectors, out)], atol=1e-5)
    deltas = cs.per_row["real"] - cs.per_row["nonsense"]
    assert cs.control("nonsense").delta.mean == pytest.approx(deltas.mean())


def test_constructed_reconstructors_are_separated(vectors):
    rng = np.random.default_rng(9)
    blind = ConstantAR(rng.normal(size=D))
    oracle = OracleAR({t: v for t, v in zip(EXPL, vectors)}, other=rng.normal(size=D))
    assert content_sensitivity(blind, vectors, EXPL, n_boot=200).verdict == "ignores_input"
    cs = content_sensitivity(oracle, vectors, EXPL, n_boot=200)
    assert cs.verdict == "reads_input" and cs.real.mean == pytest.approx(1.0)


def test_each_distinct_text_is_read_once(vectors):
    ar = ConstantAR(np.ones(D))
    texts = ["a", "bb", "a", "", "bb", "a"]
    out = reconstruct_unique(ar, texts)
    assert ar.calls == [["", "a", "bb"]]  # each distinct text once, shortest first
    assert out.shape == (6, D)
    content_sensitivity(ar, vectors, EXPL, n_boot=50)
    assert [""] in ar.calls  # the empty control costs one AR row, not N


def test_controls_are_well_formed():
    rng = np.random.default_rng(0)
    for n in (2, 3, 17):
        perm = derangement(n, rng)
        assert sorted(perm.tolist()) == list(range(n)) and all(perm[i] != i for i in range(n))
    texts = nonsense_texts([1, 5, 9], rng)
    assert [len(t.split()) for t in texts] == [3, 5, 9]
    assert all(w.isalpha() and w.islower() for t in texts for w in t.split())


def test_seed_makes_controls_reproducible(vectors):
    oracle = OracleAR({t: v for t, v in zip(EXPL, vectors)}, other=np.ones(D))
    a = content_sensitivity(oracle, vectors, EXPL, seed=4, n_boot=50)
    b = content_sensitivity(oracle, vectors, EXPL, seed=4, n_boot=50)
    assert a.texts == b.texts and a.to_dict() == b.to_dict()


def test_bad_input_is_refused(vectors):
    ar = ConstantAR(np.ones(D))
    with pytest.raises(DataError, match="11 explanations for 12 vectors"):
        content_sensitivity(ar, vectors, EXPL[:11])
    with pytest.raises(DataError, match="at least 2 rows"):
        content_sensitivity(ar, vectors[:1], EXPL[:1])
    with pytest.raises(TypeError, match="no `reconstruct"):
        content_sensitivity(object(), vectors, EXPL)
    with pytest.raises(DataError, match="shape"):
        content_sensitivity(ConstantAR(np.ones(D + 1)), vectors, EXPL)
