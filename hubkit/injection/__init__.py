"""Putting a vector into the AV: pure functions first, then the forward hooks that apply them.

Schemes are registered in `hubkit.injection.schemes` (one small class each: plan, hook, lint):

* ``embedding_replace``: the input-embedding row at the marker token becomes ``v · s / ‖v‖``,
  in the space *after* the model's own embedding scaling (a hook on the embedding module's
  output, so Gemma's ``sqrt(d)`` factor is already applied to the other rows).
* ``residual_add``: at the output of decoder block ``b``, ``h_p ← h_p + ‖h_p‖ · v / ‖v‖``.

A prompt may hold k markers; each row then takes k vectors (``[N, k, d]``), filled in order.
"""

from hubkit.injection.hooks import InjectionPlan, injected, plan, shift_plan
from hubkit.injection.markers import MARKER_CANDIDATES, find_markers, marker_ids, pick_marker
from hubkit.injection.schemes import (
    SCHEMES,
    InjectionScheme,
    add_norm_matched,
    register_scheme,
    replace_rows,
    scale_vectors,
)
from hubkit.scale_lint import ScaleLint, scale_report

__all__ = [
    "MARKER_CANDIDATES",
    "SCHEMES",
    "InjectionPlan",
    "InjectionScheme",
    "ScaleLint",
    "add_norm_matched",
    "find_markers",
    "injected",
    "marker_ids",
    "pick_marker",
    "plan",
    "register_scheme",
    "replace_rows",
    "scale_report",
    "scale_vectors",
    "shift_plan",
]
