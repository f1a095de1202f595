"""Claim ablation: per-claim changes against independent AR calls; a reading AR against a blind one."""

import numpy as np
import pytest

from hubkit.errors import DataError
from hubkit.eval.claims import claim_ablation, claims, split_claims, without_claim

from .conftest import ConstantAR, D, blind_real_ar, fitted_ar

MULTI = [
    f"Item number {i} is here. It is about topic {chr(97 + i)}.\nThe last word is w{i}!" for i in range(12)
]


def _cos(a, b):
    return float(np.dot(a, b) / np.linalg.norm(a) / np.linalg.norm(b))


def test_claims_are_lines_and_sentences():
    text = "First claim. Second one?\n\n  Third line!  \nfourth"
    assert split_claims(text) == [["First claim.", "Second one?"], ["Third line!"], ["fourth"]]
    assert claims(text) == ["First claim.", "Second one?", "Third line!", "fourth"]
    assert without_claim(text, 1) == "First claim.\nThird line!\nfourth"
    assert without_claim(text, 2) == "First claim. Second one?\nfourth"
    assert without_claim("only one", 0) == "" and claims("   ") == []
    with pytest.raises(DataError, match="claim 4 of an explanation with 4 claims"):
        without_claim(text, 4)


def test_per_claim_changes_match_independent_ar_calls(tiny, metas, vectors):
    ar = fitted_ar(tiny, metas[1], MULTI, vectors)
    ca = claim_ablation(ar, vectors, MULTI, n_boot=200)
    assert ca.n_rows == ca.n_rows_ablated == 12 and ca.n_claims == 36 and ca.n_claims_skipped == 0
    for r in (0, 5, 11):
        full = ar.reconstruct([MULTI[r]])[0].double().numpy()
        for j in range(3):
            out = ar.reconstruct([without_claim(MULTI[r], j)])[0].double().numpy()
            want = _cos(vectors[r], full) - _cos(vectors[r], out)
            assert ca.per_row[r][j] == pytest.approx(want, abs=1e-5)
    flat = np.array([d for row in ca.per_row for d in row])
    assert ca.delta.mean == pytest.approx(flat.mean())
    assert [g.index for g in ca.by_index] == ["0", "1", "2"] and all(g.n == 12 for g in ca.by_index)
    assert ca.by_index[2].delta.mean == pytest.approx(np.mean([row[2] for row in ca.per_row]))
    assert ca.row_max_delta.mean == pytest.approx(np.mean([max(row) for row in ca.per_row]))
    assert ca.top_claims[0].delta == pytest.approx(flat.max())
    top = ca.top_claims[0]
    assert claims(MULTI[top.row])[top.index] == top.claim


def test_reading_ar_carries_claims_blind_ar_does_not(tiny, metas, vectors):
    reading = claim_ablation(fitted_ar(tiny, metas[1], MULTI, vectors), vectors, MULTI, n_boot=300)
    blind = claim_ablation(blind_real_ar(tiny, metas[1]), vectors, MULTI, n_boot=300)
    assert reading.cos_full.mean > 0.99
    assert reading.delta.ci_low > 0 and all(g.delta.mean > 0 for g in reading.by_index)
    assert blind.delta.mean == pytest.approx(0.0, abs=1e-6)
    assert max(abs(d) for row in blind.per_row for d in row) < 1e-6
    assert reading.delta.mean > blind.delta.mean + 0.05


def test_empty_single_and_long_rows_are_counted(vectors):
    texts = ["", "one claim only"] + ["A. B. C. D. E. F. G."] * 10
    ca = claim_ablation(ConstantAR(np.ones(D)), vectors, texts, max_claims=6, n_boot=50)
    assert ca.n_rows_no_claim == 1 and ca.n_rows_single_claim == 1 and ca.n_rows_ablated == 11
    assert ca.n_claims == 1 + 10 * 6 and ca.n_claims_skipped == 10
    assert [g.index for g in ca.by_index] == ["0", "1", "2", "3", "4", "5+"]
    assert ca.by_index[-1].n == 10 and ca.per_row[0] == []
    with pytest.raises(DataError, match="max_claims must be at least 1"):
        claim_ablation(ConstantAR(np.ones(D)), vectors, texts, max_claims=0)
    with pytest.raises(DataError, match="11 explanations for 12 vectors"):
        claim_ablation(ConstantAR(np.ones(D)), vectors, texts[:11])
