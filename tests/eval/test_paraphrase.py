"""Paraphrase sensitivity through real labeler backends (a loopback Chat Completions server, a local model)."""

import numpy as np
import pytest

from hubkit.data.labelers import TransformersLabeler
from hubkit.errors import DataError
from hubkit.eval.paraphrase import STATUSES, paraphrase, paraphrase_sensitivity

from .conftest import EMPTY, IDENTICAL, ConstantAR, D, blind_real_ar, fitted_ar

EXPL = [f"item number {i} is about topic {chr(97 + i)}" for i in range(12)]


def _cos(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    return np.sum(a * b, 1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def _rank(v, v_hat):
    u = v / np.linalg.norm(v, axis=1, keepdims=True)
    uh = v_hat / np.linalg.norm(v_hat, axis=1, keepdims=True)
    sims = uh @ u.T
    return np.array([(sims[i] >= sims[i, i]).sum() - 1 for i in range(len(v))])


def test_identical_and_empty_paraphrases_are_counted_not_dropped(server_labeler, rewording_server):
    texts = EXPL + ["", EXPL[1]]  # an empty source row and a duplicate
    got = paraphrase(server_labeler, texts)
    assert len(got.texts) == len(got.statuses) == 14
    assert got.counts() == {"ok": 10, "identical": 2, "empty": 1, "source_empty": 1}
    assert [got.statuses[i] for i in sorted(IDENTICAL | EMPTY)] == ["identical", "empty", "identical"]
    assert got.statuses[12] == "source_empty" and got.texts[12] == ""
    assert got.texts[1] == got.texts[13] == "topic b is what entry 1 concerns"
    assert (
        len(rewording_server.requests) == 12
    )  # each distinct non-empty text asked once; the empty one never
    assert got.labeler == "openai:rewriter" and set(got.counts()) == set(STATUSES)


def test_reading_ar_loses_cosine_under_paraphrase_blind_ar_does_not(tiny, metas, vectors, server_labeler):
    reading = fitted_ar(tiny, metas[1], EXPL, vectors)
    ps = paraphrase_sensitivity(reading, vectors, EXPL, server_labeler, seed=0, n_boot=300)
    ok = [i for i in range(12) if i not in IDENTICAL | EMPTY]
    assert ps.n == 12 and ps.n_used == len(ok) == 9
    assert ps.statuses == {"ok": 9, "identical": 2, "empty": 1, "source_empty": 0}
    # independent: the AR on the original and on the server's rewording, cosines by hand
    orig = reading.reconstruct(EXPL).double().numpy()
    para_texts = [f"topic {chr(97 + i)} is what entry {i} concerns" for i in ok]
    para = reading.reconstruct(para_texts).double().numpy()
    c_o, c_p = _cos(vectors[ok], orig[ok]), _cos(vectors[ok], para)
    assert ps.cos_original.mean == pytest.approx(c_o.mean(), abs=1e-5) and c_o.min() > 0.99
    assert ps.delta.mean == pytest.approx((c_p - c_o).mean(), abs=1e-5)
    assert ps.delta.ci_high < 0 and ps.relative_change == pytest.approx(
        (c_p - c_o).mean() / c_o.mean(), abs=1e-5
    )
    assert ps.verdict == "wording_sensitive"
    np.testing.assert_allclose(ps.per_row["cos_paraphrase"][ok], c_p, atol=1e-5)
    assert np.isnan(ps.per_row["cos_paraphrase"][sorted(IDENTICAL | EMPTY)]).all()
    # FVE of the nine rows, before and after, with B from their unit vectors
    u = vectors[ok] / np.linalg.norm(vectors[ok], axis=1, keepdims=True)
    b = np.mean(np.sum((u - u.mean(0)) ** 2, 1))
    assert ps.fve.before == pytest.approx(1 - np.mean(2 - 2 * c_o) / b, abs=1e-5)
    assert ps.fve.after == pytest.approx(1 - np.mean(2 - 2 * c_p) / b, abs=1e-5)
    assert ps.fve.ci_low <= ps.fve.delta <= ps.fve.ci_high
    # identification flips at top-1, ranked among all 12 vectors
    full = orig.copy()
    full[ok] = para
    before, after = _rank(vectors, orig)[ok] < 1, _rank(vectors, full)[ok] < 1
    f1 = ps.flips[0]
    assert f1.k == 1 and f1.identified_before == before.sum() == 9
    assert f1.lost == int((before & ~after).sum()) and f1.flip_share == pytest.approx(
        (before != after).mean()
    )

    blind = paraphrase_sensitivity(blind_real_ar(tiny, metas[1]), vectors, EXPL, server_labeler, n_boot=300)
    assert blind.delta.mean == pytest.approx(0.0, abs=1e-6) and blind.delta.max == pytest.approx(
        0.0, abs=1e-6
    )
    assert all(f.lost == f.gained == 0 for f in blind.flips) and blind.verdict == "meaning_stable"
    assert ps.delta.mean < blind.delta.mean - 0.05  # separated in the expected direction


def test_local_model_paraphraser_accounts_for_every_row(tiny):
    local = TransformersLabeler(tiny.model, tiny.tokenizer, "tiny", max_new_tokens=6, batch_size=4)
    got = paraphrase(local, EXPL[:5] + [""])
    assert len(got.statuses) == 6 and sum(got.counts().values()) == 6
    assert got.statuses[5] == "source_empty" and got.labeler == "tiny"


def test_bad_input_is_refused(vectors, server_labeler):
    ar = ConstantAR(np.ones(D))
    with pytest.raises(DataError, match="11 explanations for 12 vectors"):
        paraphrase_sensitivity(ar, vectors, EXPL[:11], server_labeler)
    with pytest.raises(DataError, match="needs a labeler backend"):
        paraphrase_sensitivity(ar, vectors, EXPL)
    with pytest.raises(TypeError, match="not a labeler"):
        paraphrase(object(), EXPL)
