"""Putting a vector into the AV: pure functions first, then the forward hooks that apply them.

Schemes are registered in `hubkit.injection.registry` (one small class each: plan, hook, lint):

* ``embedding_replace``: the input-embedding row at the marker token becomes ``v · s / ‖v‖``,
  in the space *after* the model's own embedding scaling (a hook on the embedding module's
  output, so Gemma's ``sqrt(d)`` factor is already applied to the other rows).
* ``residual_add``: at the output of decoder block ``b``, ``h_p ← h_p + ‖h_p‖ · v / ‖v‖``.

A prompt may hold k markers; each row then takes k vectors (``[N, k, d]``), filled in order.

Names are loaded on first use, so ``hubkit.injection.registry`` (scheme names, no torch) stays
cheap to import for the meta modules.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOME = {
    # vectors.py: validation and scaling (pure)
    "check_vectors": "vectors",
    "scale_vectors": "vectors",
    "replace_rows": "vectors",
    "add_norm_matched": "vectors",
    # markers.py: where the vector goes
    "MARKER_CANDIDATES": "markers",
    "find_markers": "markers",
    "marker_ids": "markers",
    "pick_marker": "markers",
    # hooks.py: plans and forward hooks
    "InjectionPlan": "hooks",
    "plan": "hooks",
    "injected": "hooks",
    "shift_plan": "hooks",
    # lint.py: the scale check
    "ScaleReport": "lint",
    "scale_report": "lint",
    # registry.py: schemes
    "InjectionScheme": "registry",
    "register_scheme": "registry",
    "get_scheme": "registry",
    "scheme_names": "registry",
}

__all__ = sorted(_HOME)


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module 'hubkit.injection' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"hubkit.injection.{_HOME[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOME])
