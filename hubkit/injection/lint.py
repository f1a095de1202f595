"""The injection-scale check as the training and injection code see it: `hubkit.scale_lint` (two
norms, one rule) applied to a loaded model. A scale far from the model's own norms never passes
silently."""

from __future__ import annotations

from typing import Any

from torch import nn

from hubkit.constants import OOD_SCALE_FACTOR
from hubkit.scale_lint import ScaleLint as ScaleReport


def scale_report(
    scale: float | None,
    model: nn.Module,
    factor: float = OOD_SCALE_FACTOR,
    tokenizer: Any = None,
    layer: int | None = None,
) -> ScaleReport:
    """Judge `scale` against the model's median token-embedding norm (after its own scaling) and, given
    the tokenizer and the NLA's layer, the median residual norm there on the bundled corpus.

    A second norm can only widen the accepted range, so the residual norm (a forward pass) is measured
    only when the embedding norm alone would refuse the scale."""
    from hubkit import scale_lint

    embedding = scale_lint.embedding_norm(model)
    lint = scale_lint.lint_scale(scale, embedding, None, factor)
    if not lint.ok and tokenizer is not None and layer is not None:
        residual = scale_lint.corpus_residual_norm(model, tokenizer, layer)
        lint = scale_lint.lint_scale(scale, embedding, residual, factor)
    return lint
