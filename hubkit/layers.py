"""The default extraction layer: two-thirds of the way through the decoder, one formula.

``(2 * n_layers) // 3`` (floor). It gives the offline registry's hand-picked layers (SmolLM2-135M:
30 → 20; Gemma-3-270M: 18 → 12) and the reference NLAs' layers (Gemma-3-12B 48 → 32, Gemma-3-27B
62 → 41, Llama-3.3-70B 80 → 53). ``round(2n/3)`` differs only when n ≡ 2 (mod 3), e.g. 28 → 18 vs 19.
"""

from __future__ import annotations


def default_layer(n_layers: int) -> int:
    """The residual stream after block ``(2n)//3`` (0-based), for a decoder of `n_layers` blocks."""
    if n_layers < 1:
        raise ValueError(f"a decoder needs at least one block, got n_layers={n_layers}")
    return (2 * n_layers) // 3
