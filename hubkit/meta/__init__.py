"""`NLAMeta`: hubkit's versioned NLA schema, and readers for the published dialects. Pure data: no torch."""

from hubkit.meta.compat import check_compatible
from hubkit.meta.record import NLAMeta, fill_suffix_ids
from hubkit.meta.registry import DIALECTS, register
from hubkit.meta.sections import (
    DEFAULT_AR_TEMPLATE,
    DEFAULT_AV_TEMPLATE,
    MARKER_PLACEHOLDER,
    SCHEMES,
    Adapter,
    ARSpec,
    AVSpec,
    Injection,
    Retraction,
    Scheme,
    Training,
    critic_suffix_ids,
    resolve_scale,
)

__all__ = [
    "DEFAULT_AR_TEMPLATE",
    "DEFAULT_AV_TEMPLATE",
    "DIALECTS",
    "MARKER_PLACEHOLDER",
    "SCHEMES",
    "ARSpec",
    "AVSpec",
    "Adapter",
    "Injection",
    "NLAMeta",
    "Retraction",
    "Scheme",
    "Training",
    "check_compatible",
    "critic_suffix_ids",
    "fill_suffix_ids",
    "register",
    "resolve_scale",
]
