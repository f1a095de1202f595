"""Putting a vector into the AV: markers, plans and forward hooks over the registered schemes."""

from hubkit.injection.hooks import injected, plan, shift_plan
from hubkit.injection.markers import MARKER_CANDIDATES, find_markers, marker_ids, pick_marker
from hubkit.injection.schemes import (
    SCHEMES,
    InjectionScheme,
    add_norm_matched,
    register_scheme,
    replace_rows,
    scale_vectors,
)
from hubkit.scale_lint import scale_report

__all__ = [
    "MARKER_CANDIDATES",
    "SCHEMES",
    "InjectionScheme",
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
