"""The reference implementation's schema_version-2 keys, written beside hubkit's record.

The reference inference client reads ``kind``, ``d_model``, ``extraction.injection_scale`` (a
number), ``tokens.*`` and ``prompt_templates.av|actor``; its critic reads ``role``,
``extraction.mse_scale`` (a number) and ``prompt_templates.ar|critic``; its training config also
reads ``critic.extraction_layer_index`` (K) and ``tokens.critic_suffix_ids``. Scales are written
resolved (as the reference's own writer does), null where hubkit injects raw vectors or uses a
scheme the reference cannot express (residual addition). What a layout cannot express (an adapter,
residual addition, a raw AV template) is only in hubkit's record.
"""

from __future__ import annotations

import copy
import math
from dataclasses import replace
from typing import Any

from hubkit import constants as C
from hubkit.errors import MetaError
from hubkit.meta.record import NLAMeta
from hubkit.meta.sections import EXPLANATION_PLACEHOLDER, resolve_scale

REFERENCE_SCHEMA_VERSION = 2


def reference_keys(meta: NLAMeta) -> dict[str, Any]:
    """The reference keys `meta` can express, in the reference writer's order."""
    out: dict[str, Any] = {
        "kind": "nla_model",
        "schema_version": REFERENCE_SCHEMA_VERSION,
        "role": meta.role,
        "base_checkpoint": meta.base_model,
        "d_model": meta.d_model,
    }
    inj = meta.injection
    out["extraction"] = {
        "injection_scale": meta.injection_scale_value(),
        "mse_scale": resolve_scale(meta.mse_scale, meta.d_model),
    }
    tokens: dict[str, Any] = {}
    if inj is not None:
        for ref, value in (
            ("injection_char", inj.marker),
            ("injection_token_id", inj.marker_token_id),
            ("injection_left_neighbor_id", inj.left_neighbor_id),
            ("injection_right_neighbor_id", inj.right_neighbor_id),
        ):
            if value is not None:
                tokens[ref] = value
    if meta.ar is not None and meta.ar.suffix_ids is not None:
        tokens["critic_suffix_ids"] = list(meta.ar.suffix_ids)
    if tokens:
        out["tokens"] = tokens
    templates = {}
    if meta.av is not None:
        templates["av"] = meta.av.template
    if meta.ar is not None:
        templates["ar"] = meta.ar.template
    out["prompt_templates"] = templates
    if meta.layer is not None:
        out["critic"] = {"extraction_layer_index": meta.layer}
        out["extraction_layer_index"] = meta.layer
    gaps = unexpressed(meta, out)
    if gaps:
        out[C.RECORD_NEEDED_KEY] = gaps
    return out


_COMPARED = {
    "av": ("role", "base_model", "d_model", "layer", "injection", "av"),
    "ar": ("role", "base_model", "d_model", "layer", "ar"),
}


def _comparable(meta: NLAMeta) -> dict[str, Any]:
    """The settings that change what a half computes, scales resolved to numbers."""
    data = {k: v for k, v in meta.to_dict().items() if k in _COMPARED[meta.role]}
    leaves = _leaves(data)
    leaves["mse_scale"] = meta.mse_scale_value()
    if meta.role == "av":
        leaves["injection.scale"] = meta.injection_scale_value()
    return leaves


def unexpressed(meta: NLAMeta, keys: dict[str, Any]) -> list[str]:
    """Fields of `meta` that reading `keys` alone (the reference reader and its defaults) would get wrong.

    Written as ``hubkit_record_needed`` beside the reference keys, so that a copy whose ``hubkit:``
    record was lost is refused instead of read with defaults that compute other vectors."""
    from hubkit.meta.dialects.reference import read_reference
    from hubkit.schema import SchemaError, from_dict

    where = "<reference keys>"
    try:
        converted, _ = read_reference(copy.deepcopy(keys), where, None)
        back = from_dict(NLAMeta, converted, where)
    except (MetaError, SchemaError, ValueError):
        return [
            "injection.scheme" if meta.injection and meta.injection.scheme != "embedding_replace" else "role"
        ]
    want, got = _comparable(meta), _comparable(back)
    return sorted(k for k in want.keys() | got.keys() if not _same(want.get(k), got.get(k)))


def critic_suffix_ids(tokenizer: Any, template: str) -> list[int]:
    """``tokenize(suffix)[1:]``: the AR template's text after ``{explanation}``, tokenized without
    special tokens, less its first token (which merges with the explanation's last characters)."""
    suffix = template.split(EXPLANATION_PLACEHOLDER, 1)[1]
    ids = list(tokenizer(suffix, add_special_tokens=False)["input_ids"])
    if len(ids) < 2:
        raise MetaError(
            f"the AR template's suffix {suffix!r} is {len(ids)} token(s); `critic_suffix_ids` drops the first, "
            "so it needs at least 2: lengthen the text after {explanation}"
        )
    return ids[1:]


def fill_suffix_ids(meta: NLAMeta, tokenizer: Any) -> NLAMeta:
    """`meta` with ``ar.suffix_ids`` computed from `tokenizer` (a copy; `meta` is not changed)."""
    if meta.ar is None:
        return meta
    return meta.with_updates(ar=replace(meta.ar, suffix_ids=critic_suffix_ids(tokenizer, meta.ar.template)))


def _leaves(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_leaves(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-9)
    return a == b


def check_reference_keys(top: dict[str, Any], record: dict[str, Any], where: str) -> None:
    """Refuse a file whose reference keys disagree with its hubkit record (a hand edit of one only)."""
    from hubkit.schema import SchemaError, from_dict

    try:
        meta = from_dict(NLAMeta, record, where)
    except SchemaError:
        return  # the record itself is wrong (or needs an override): reading it reports that
    expected = _leaves(reference_keys(meta))
    for key, value in _leaves(top).items():
        if key not in expected:
            continue
        if key == "role":
            value = {"actor": "av", "critic": "ar"}.get(value, value)
        if not _same(value, expected[key]):
            raise MetaError(
                f"{where}: field `{key}` is {value!r} but the hubkit record says {expected[key]!r}; "
                "edit both or save the meta again with hubkit"
            )
