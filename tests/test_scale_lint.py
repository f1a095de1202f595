"""The injection-scale lint: both ratios, the pass/fail rule on constructed norms (the published
flagship scales among them), and both norms measured on tiny models against an independent
computation; the recipe words that resolve to a measured scale; the layer default."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from hubkit import model_registry, scale_lint
from hubkit.layers import default_layer
from hubkit.testing import make_tiny_model


# -- the rule, on constructed norms --------------------------------------------------------------
@pytest.mark.parametrize(
    ("scale", "emb", "res", "ok"),
    [
        (150.0, 3.15, 242.0, True),  # between the two norms
        (3.15, 3.15, 242.0, True),  # √d-style: at the embedding norm
        (50 * 242.0, 3.15, 242.0, True),  # exactly 50× the larger: still in
        (51 * 242.0, 3.15, 242.0, False),  # beyond 50× the larger
        (3.15 / 50, 3.15, 242.0, True),  # exactly 1/50 of the smaller: still in
        (3.15 / 51, 3.15, 242.0, False),  # below 1/50 of the smaller
        (80000.0, 26.0, 15070.0, True),  # a reference Gemma scale: 3077× the embeddings, 5.3× the residual
        (20000.0, 39.2, None, False),  # the retracted release (510×), no layer known: embedding only
        (20000.0, 39.2, 500.0, True),  # … but 40× a residual norm of 500 passes
        (20000.0, 39.2, 242.0, False),  # … and 83× a residual norm of 242 does not
    ],
)
def test_lint_rule_and_both_ratios(scale: float, emb: float, res: float | None, ok: bool) -> None:
    lint = scale_lint.lint_scale(scale, emb, res)
    assert lint.ok is ok
    assert lint.ratio_to_embedding == pytest.approx(scale / emb)
    assert lint.ratio_to_residual == (None if res is None else pytest.approx(scale / res))
    assert ("OUT OF DISTRIBUTION" in lint.message) is (not ok)
    assert f"{scale / emb:.3g}×" in lint.message
    if res is not None:
        assert f"{scale / res:.3g}×" in lint.message


def test_lint_factor_and_no_scale() -> None:
    assert not scale_lint.lint_scale(11.0, 1.0, 2.0, factor=5).ok
    assert scale_lint.lint_scale(10.0, 1.0, 2.0, factor=5).ok
    none = scale_lint.lint_scale(None, 3.0, 200.0)
    assert none.ok and none.ratio_to_embedding is None and "no injection scale" in none.message


# -- measuring the norms on tiny models ---------------------------------------------------------------
@pytest.fixture(scope="module", params=["llama", "gemma3"])
def tiny(request):
    return make_tiny_model(request.param, d_model=32, n_layers=3)


def test_embedding_norm_is_after_the_models_own_scaling(tiny) -> None:
    weight = tiny.model.get_input_embeddings().weight.detach().double().numpy()
    factor = math.sqrt(32) if tiny.arch == "gemma3" else 1.0
    norms = np.sort(np.linalg.norm(weight, axis=1) * factor)
    assert scale_lint.embedding_norm(tiny.model) == pytest.approx(norms[(len(norms) - 1) // 2], rel=1e-5)


TEXTS = ["The cat sat on the mat.", "Paris is the capital of France; rivers flow to the sea.", "x"]


@pytest.mark.parametrize("layer", [0, 1])
def test_residual_norm_matches_hidden_states_over_real_tokens(tiny, layer: int) -> None:
    """Texts of different lengths share a padded batch; the median must be over real tokens only."""
    norms = []
    with torch.no_grad():
        for text in TEXTS:
            ids = tiny.tokenizer(text, return_tensors="pt")
            out = tiny.model(**ids, output_hidden_states=True)
            hidden = out.hidden_states[layer + 1][0]  # blocks 0 and 1 of 3: before the final norm
            norms += hidden.double().norm(dim=-1).tolist()
    want = float(np.sort(norms)[(len(norms) - 1) // 2])
    got = scale_lint.residual_norm(tiny.model, tiny.tokenizer, layer, TEXTS, batch_size=3)
    assert got == pytest.approx(want, rel=1e-5)
    assert scale_lint.residual_norm(tiny.model, tiny.tokenizer, layer, TEXTS, batch_size=1) == pytest.approx(
        got
    )


def test_recipe_words_resolve_to_measured_scales(tiny) -> None:
    emb = scale_lint.embedding_norm(tiny.model)
    res = scale_lint.residual_norm(tiny.model, tiny.tokenizer, 1, TEXTS)
    assert scale_lint.resolve_recipe_scale("embedding_norm", tiny.model) == float(f"{emb:.4g}")
    got = scale_lint.resolve_recipe_scale("activation_norm", tiny.model, tiny.tokenizer, 1, TEXTS)
    assert got == float(f"{res:.4g}")
    assert scale_lint.resolve_recipe_scale(150.0, tiny.model) == 150.0
    assert scale_lint.resolve_recipe_scale("sqrt_d_model", tiny.model) == "sqrt_d_model"
    with pytest.raises(ValueError, match="activation_norm needs"):
        scale_lint.resolve_recipe_scale("activation_norm", tiny.model)


def test_bundled_texts_come_from_the_packaged_corpus() -> None:
    texts = scale_lint.bundled_texts(8)
    assert len(texts) == 8 and len(set(texts)) == 8 and all(len(t) > 50 for t in texts)


def test_importing_the_lint_does_not_import_torch() -> None:
    code = "import sys, hubkit.scale_lint, hubkit.layers, hubkit.identity, hubkit.meta; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# -- the layer default ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("n", "layer"), [(30, 20), (18, 12), (48, 32), (62, 41), (80, 53), (28, 18), (1, 0)])
def test_default_layer_is_two_thirds_floor(n: int, layer: int) -> None:
    assert default_layer(n) == layer


def test_registry_layers_are_the_default() -> None:
    for spec in model_registry.specs().values():
        assert spec.nla_layer == default_layer(spec.n_layers), spec.name
