"""`NLAMeta`: hubkit's versioned NLA schema, and readers for the published dialects.

Every choice that changes what an NLA computes is a field (injection scheme and scale, marker and
neighbour ids, chat template on/off, layer, width, AR kept blocks, head format and bias, AR BOS and
input normalisation, ``mse_scale``, prompt templates, base model, adapter).

- `sections`: the schema's sections (`Injection`, `AVSpec`, `ARSpec`, `Adapter`, `Training`).
- `record`: `NLAMeta` itself: load any dialect, save hubkit's record plus the reference keys.
- `registry` + `dialects/`: one reader per published dialect, tried in priority order.
- `reference_keys`: the reference schema_version-2 keys a saved file carries; `critic_suffix_ids`.
- `compat`: `check_compatible`, whether an AV and an AR form a pair.

Importing this package does not import torch.
"""

from hubkit.meta import dialects  # noqa: E402,F401  (registers the built-in readers)
from hubkit.meta.compat import check_compatible
from hubkit.meta.record import HUBKIT_KEY, NLAMeta
from hubkit.meta.reference_keys import critic_suffix_ids, fill_suffix_ids, reference_keys
from hubkit.meta.registry import DIALECTS, Dialect, DialectReader, register
from hubkit.meta.sections import (
    DEFAULT_AR_TEMPLATE,
    DEFAULT_AV_TEMPLATE,
    EXPLANATION_PLACEHOLDER,
    MARKER_PLACEHOLDER,
    ROLE_ALIASES,
    Adapter,
    ARSpec,
    AVSpec,
    HeadFormat,
    Injection,
    Retraction,
    Role,
    Scale,
    Training,
    resolve_scale,
)

__all__ = [
    "DEFAULT_AR_TEMPLATE",
    "DEFAULT_AV_TEMPLATE",
    "DIALECTS",
    "EXPLANATION_PLACEHOLDER",
    "HUBKIT_KEY",
    "MARKER_PLACEHOLDER",
    "ROLE_ALIASES",
    "ARSpec",
    "AVSpec",
    "Adapter",
    "Dialect",
    "DialectReader",
    "HeadFormat",
    "Injection",
    "NLAMeta",
    "Retraction",
    "Role",
    "Scale",
    "Training",
    "check_compatible",
    "critic_suffix_ids",
    "fill_suffix_ids",
    "reference_keys",
    "register",
    "resolve_scale",
]
