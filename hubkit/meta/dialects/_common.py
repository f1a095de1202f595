"""Helpers the dialect readers share: popping fields, roles, scales, depth, templates, folder facts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hubkit import constants as C
from hubkit.errors import MetaError
from hubkit.meta.registry import parse_scale
from hubkit.meta.sections import EXPLANATION_PLACEHOLDER, MARKER_PLACEHOLDER, ROLE_ALIASES

# The published spellings of the extraction layer K; every one holds K (the AR keeps K+1 blocks).
DEPTH_FIELDS = (
    "critic.extraction_layer_index",
    "extraction_layer_index",
    "critic.num_hidden_layers",
    "ar.num_hidden_layers",
)


class Taker:
    """Pops fields from a legacy mapping; whatever is left over is reported or kept as `legacy`."""

    def __init__(self, data: dict[str, Any], where: str) -> None:
        self.data, self.where = data, where

    def pop(self, dotted: str, default: Any = None) -> Any:
        *parents, last = dotted.split(".")
        node = self.data
        for p in parents:
            node = node.get(p) if isinstance(node, dict) else None
            if node is None:
                return default
        if not isinstance(node, dict) or last not in node:
            return default
        return node.pop(last)

    def leftovers(self) -> dict[str, Any]:
        def prune(d: Any) -> Any:
            if isinstance(d, dict):
                out = {k: prune(v) for k, v in d.items()}
                return {k: v for k, v in out.items() if v not in ({}, None)}
            return d

        return prune(self.data)


def role(value: Any, where: str) -> str:
    if value not in ROLE_ALIASES:
        raise MetaError(f"{where}: field `role` must be one of {sorted(ROLE_ALIASES)}, got {value!r}")
    return ROLE_ALIASES[value]


def scale(value: Any, where: str, name: str) -> Any:
    return parse_scale(value, where, name)


def extraction_layer(t: Taker, where: str) -> int | None:
    """K from whichever of the published depth spellings are present; they must agree."""
    found: dict[str, int] = {}
    for key in DEPTH_FIELDS:
        v = t.pop(key)
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, int):
            raise MetaError(f"{where}: field `{key}` must be an integer, got {v!r}")
        found[key] = v
    values = sorted(set(found.values()))
    if len(values) > 1:
        a, va = next(iter(found.items()))
        b, vb = next((k, v) for k, v in found.items() if v != va)
        raise MetaError(
            f"{where}: contradictory AR depth: field `{a}` is {va} but field `{b}` is {vb} (each holds the "
            "extraction layer K; the AR keeps K+1 blocks); keep one"
        )
    return values[0] if values else None


def folder_head(folder: Path | None) -> tuple[str | None, bool | None]:
    """Inspect a checkpoint folder for the AR head file and whether it carries a bias."""
    if folder is None:
        return None, None
    if (folder / C.VALUE_HEAD_FILE).exists():
        return "value_head", safetensors_has_bias(folder / C.VALUE_HEAD_FILE)
    if (folder / C.AR_LORA_HEAD_FILE).exists():
        return "ar_lora_value_head", safetensors_has_bias(folder / C.AR_LORA_HEAD_FILE)
    if (folder / C.LINEAR_HEAD_PT_FILE).exists():
        return "linear_head_pt", True
    return None, None


def safetensors_has_bias(path: Path) -> bool:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        return any(k.endswith("bias") for k in f.keys())


def adapter_from_folder(folder: Path | None) -> tuple[dict[str, Any], str | None]:
    if folder is None or not (folder / C.ADAPTER_CONFIG_FILE).exists():
        return {"kind": "full"}, None
    cfg = json.loads((folder / C.ADAPTER_CONFIG_FILE).read_text())
    tm = cfg.get("target_modules")
    return (
        {
            "kind": "lora",
            "r": cfg.get("r"),
            "alpha": cfg.get("lora_alpha"),
            "target_modules": sorted(tm) if isinstance(tm, (list, set)) else tm,
            "rslora": bool(cfg.get("use_rslora", False)),
        },
        cfg.get("base_model_name_or_path"),
    )


def templates(t: Taker, where: str) -> tuple[str | None, str | None]:
    """(AV, AR) templates from `prompt_templates` (`av`/`actor`, `ar`/`critic`), each checked for its placeholder.

    A null template (the reference trainer writes `critic: null` on actors) counts as absent.
    """
    found_all = t.pop("prompt_templates") or {}
    if not isinstance(found_all, dict):
        raise MetaError(f"{where}: field `prompt_templates` must be a mapping, got {found_all!r}")
    out: list[str | None] = []
    for names, placeholder in (
        (("av", "actor"), MARKER_PLACEHOLDER),
        (("ar", "critic"), EXPLANATION_PLACEHOLDER),
    ):
        found = {n: found_all.pop(n) for n in names if n in found_all}
        found = {n: v for n, v in found.items() if v is not None}
        if len(set(map(str, found.values()))) > 1:
            raise MetaError(
                f"{where}: fields `prompt_templates.{names[0]}` and `.{names[1]}` differ; keep one"
            )
        for name, tmpl in found.items():
            if not isinstance(tmpl, str) or tmpl.count(placeholder) != 1:
                raise MetaError(
                    f"{where}: field `prompt_templates.{name}` must be a string holding {placeholder} exactly once, "
                    f"got {tmpl!r}"
                )
        out.append(next(iter(found.values()), None))
    if found_all:
        raise MetaError(f"{where}: unknown field(s) under `prompt_templates`: {sorted(found_all)}")
    return out[0], out[1]


def read_ar_meta_json(folder: Path) -> dict[str, Any]:
    """The consumer-GPU AR's ``ar_meta.json``: a JSON object, else one error naming the file."""
    path = folder / C.AR_META_JSON
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise MetaError(f"{path}: not valid UTF-8 JSON ({exc}); restore the file from the release") from exc
    if not isinstance(data, dict):
        raise MetaError(f"{path}: expected a JSON object at the top level, got {type(data).__name__}")
    return data


def first(value: Any) -> Any:
    if isinstance(value, list):
        return str(value[0]) if value else None
    return None if value is None else str(value)


def drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}
