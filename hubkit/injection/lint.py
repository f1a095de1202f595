"""The injection-scale check: a scale far from the model's own norms must never pass silently."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from hubkit import arch
from hubkit.constants import OOD_SCALE_FACTOR


@dataclass
class ScaleReport:
    scale: float | None
    embedding_norm: float
    ratio: float | None
    ok: bool
    message: str


def scale_report(scale: float | None, model: nn.Module, factor: float = OOD_SCALE_FACTOR) -> ScaleReport:
    """Compare the injection norm with the model's median token-embedding norm (after its scaling)."""
    norm = arch.median_embedding_norm(model)
    if scale is None:
        return ScaleReport(
            None, norm, None, True, f"raw vectors (no rescale); median embedding norm {norm:.3g}"
        )
    ratio = scale / norm
    ok = 1 / factor <= ratio <= factor
    msg = f"injection scale {scale:.4g} is {ratio:.3g}× the median token-embedding norm {norm:.4g}"
    if not ok:
        msg = (
            f"OUT OF DISTRIBUTION: {msg}, beyond {factor:g}× either way. The AV would see a vector unlike any "
            "token it was trained on; fix `injection.scale` (or record it as deliberate with ood_allowed)"
        )
    return ScaleReport(scale, norm, ratio, ok, msg)
