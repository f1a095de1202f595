"""Training's injection-scale check uses both norms: a scale that follows the residual norm at the
NLA's layer (as the reference's published scales do) trains; one beyond both is refused."""

from __future__ import annotations

import pytest
import torch

from hubkit.errors import InjectionError
from hubkit.scale_lint import bundled_texts
from hubkit.testing import make_tiny_model, tiny_metas
from hubkit.train.metas import check_injection_scale

LAYER = 1


@pytest.fixture(scope="module")
def gemma():
    return make_tiny_model("gemma3", d_model=64, n_layers=3)


def independent_norms(tiny) -> tuple[float, float]:
    """Median embedding norm (after Gemma's sqrt(d) scaling) and median residual norm at LAYER,
    computed from the model's own outputs."""
    model, tok = tiny.model, tiny.tokenizer
    emb = model.get_input_embeddings()(torch.arange(model.config.vocab_size)).norm(dim=-1).median()
    norms = []
    with torch.no_grad():
        for text in bundled_texts():
            ids = tok(text, truncation=True, max_length=128, return_tensors="pt")["input_ids"]
            hidden = model(input_ids=ids, output_hidden_states=True).hidden_states[LAYER + 1][0]
            norms.append(hidden.norm(dim=-1))
    return float(emb), float(torch.cat(norms).median())


def test_a_scale_following_the_residual_norm_trains_and_one_beyond_both_is_refused(gemma):
    emb, res = independent_norms(gemma)
    assert res > 2 * emb  # the premise: on this base the two yardsticks differ
    av, _ = tiny_metas(gemma, layer=LAYER, scale=40.0 * res)
    assert av.injection_scale_value() > 50 * emb  # the embedding norm alone would refuse it
    checked = check_injection_scale(av, gemma.model, allow_ood=False, tokenizer=gemma.tokenizer)
    assert not checked.injection.ood_allowed
    too_big, _ = tiny_metas(gemma, layer=LAYER, scale=60.0 * res)
    with pytest.raises(InjectionError, match="OUT OF DISTRIBUTION.*residual norm"):
        check_injection_scale(too_big, gemma.model, allow_ood=False, tokenizer=gemma.tokenizer)
    allowed = check_injection_scale(too_big, gemma.model, allow_ood=True, tokenizer=gemma.tokenizer)
    assert allowed.injection.ood_allowed


def test_without_the_tokenizer_only_the_embedding_norm_judges(gemma):
    emb, res = independent_norms(gemma)
    av, _ = tiny_metas(gemma, layer=LAYER, scale=40.0 * res)
    with pytest.raises(InjectionError, match="embedding norm"):
        check_injection_scale(av, gemma.model, allow_ood=False)
