"""The default extraction layer, ``(2 * n_layers) // 3``: the offline registry's hand-picked layers
and the reference NLAs' (Gemma-3-12B 48 → 32, Gemma-3-27B 62 → 41, Llama-3.3-70B 80 → 53).
"""

from __future__ import annotations


def default_layer(n_layers: int) -> int:
    """The residual stream after block ``(2n)//3`` (0-based), for a decoder of `n_layers` blocks."""
    if n_layers < 1:
        raise ValueError(f"a decoder needs at least one block, got n_layers={n_layers}")
    return (2 * n_layers) // 3
