"""`NLAMeta`: one half of an NLA described completely; load any dialect, save hubkit's own.

A saved ``nla_meta.yaml`` carries the reference implementation's schema_version-2 keys at the top level
(scales written resolved, as its writer does) and hubkit's full record under ``hubkit:``, which hubkit
prefers. What those keys cannot express is listed under ``hubkit_record_needed``, so that a copy without
the record is refused rather than read into other vectors.
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from hubkit import constants as C
from hubkit import identity
from hubkit.errors import MetaError
from hubkit.meta import dialects
from hubkit.meta.sections import (
    ROLE_ALIASES,
    SCHEMES,
    Adapter,
    ARSpec,
    AVSpec,
    Injection,
    Retraction,
    Role,
    Scale,
    Training,
    check_scale,
    critic_suffix_ids,
    parse_scale,
    resolve_scale,
)
from hubkit.schema import SchemaError, from_dict, to_dict

log = logging.getLogger("hubkit.meta")


@dataclass
class NLAMeta:
    """One half of an NLA. ``layer`` is ``None`` only on an AV whose file records none (the pair takes
    its AR's); ``mse_scale: None`` is the reference's raw-MSE mode; ``folder`` is never saved."""

    role: Role
    base_model: str
    d_model: int
    layer: int | None = None
    injection: Injection | None = None
    av: AVSpec | None = None
    ar: ARSpec | None = None
    mse_scale: Scale | None = "sqrt_d_model"
    base_revision: str | None = None
    adapter: Adapter = field(default_factory=Adapter)
    training: Training = field(default_factory=Training)
    retracted: Retraction | None = None
    converted_from: str | None = None
    legacy: dict[str, Any] = field(default_factory=dict)
    schema: str = C.SCHEMA_VERSION
    folder: Path | None = field(default=None, init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        self.role = ROLE_ALIASES.get(self.role, self.role)  # type: ignore[assignment]
        if self.schema != C.SCHEMA_VERSION:
            raise ValueError(f"`schema` must be {C.SCHEMA_VERSION!r}, got {self.schema!r}")
        if self.d_model < 1:
            raise ValueError(f"`d_model` must be >= 1, got {self.d_model}")
        if self.layer is not None and self.layer < 0:
            raise ValueError(f"`layer` must be >= 0, got {self.layer}")
        if self.role == "av" and (self.injection is None or self.av is None):
            raise ValueError("an AV meta needs both `injection` and `av` sections")
        if self.role == "av" and self.injection.needs_scale and self.injection.scale is None:
            raise ValueError(
                f"`injection.scale` is required for {self.injection.scheme} on an AV "
                "(a number, sqrt_d_model or raw)"
            )
        if self.role == "ar":
            if self.ar is None:
                raise ValueError("an AR meta needs an `ar` section")
            if self.layer is None or self.ar.num_layers is None:
                raise ValueError("an AR meta needs `layer` and `ar.num_layers` (the K+1 kept blocks)")
        check_scale(self.mse_scale, "mse_scale")

    # -- resolved numbers -------------------------------------------------------------------
    def mse_scale_value(self) -> float:
        """The norm both vectors are scaled to before the MSE; 1.0 for raw/null (raw-MSE mode)."""
        return resolve_scale(self.mse_scale, self.d_model) or 1.0

    def injection_scale_value(self) -> float | None:
        """The embedding-replacement norm, or ``None`` for raw vectors / norm-matched schemes."""
        if self.injection is None or not self.injection.needs_scale:
            return None
        return resolve_scale(self.injection.scale, self.d_model)

    def depth_problem(self, n_blocks: int, what: str) -> str | None:
        """Why this meta cannot run on `what`, a model of `n_blocks` decoder blocks (None when it can)."""
        if self.layer is not None and self.layer >= n_blocks:
            return (
                f"field `layer` is {self.layer} but {what} has {n_blocks} blocks (layers 0..{n_blocks - 1}); "
                "the meta belongs to a deeper base, or its layer is wrong"
            )
        if self.role == "ar" and self.ar is not None and self.ar.num_layers and self.ar.num_layers > n_blocks:
            return (
                f"field `ar.num_layers` is {self.ar.num_layers} (kept blocks) but {what} has {n_blocks} blocks; "
                "the meta belongs to a deeper base, or its depth is wrong"
            )
        return None

    # -- io -----------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """hubkit's own record (what goes under ``hubkit:`` in a saved file)."""
        data = to_dict(self)
        data.pop("folder", None)
        if not self.legacy:
            data.pop("legacy", None)
        if self.mse_scale is None:
            data["mse_scale"] = None  # raw-MSE mode is a value, not an absent field
        return {"schema": data.pop("schema"), **data}

    def reference_keys(self) -> dict[str, Any]:
        """The reference keys this meta can express, in the reference writer's order."""
        out: dict[str, Any] = {
            "kind": "nla_model",
            "schema_version": 2,
            "role": self.role,
            "base_checkpoint": self.base_model,
            "d_model": self.d_model,
            "extraction": {
                "injection_scale": self.injection_scale_value(),
                "mse_scale": resolve_scale(self.mse_scale, self.d_model),
            },
        }
        tokens = {key: getattr(self.injection, name, None) for name, key in dialects.MARKER_KEYS.items()}
        suffix = getattr(self.ar, "suffix_ids", None)
        tokens["critic_suffix_ids"] = None if suffix is None else list(suffix)
        if tokens := dialects.drop_none(tokens):
            out["tokens"] = tokens
        halves = (("av", self.av), ("ar", self.ar))
        out["prompt_templates"] = {k: s.template for k, s in halves if s is not None}
        if self.layer is not None:
            out["critic"] = {"extraction_layer_index": self.layer}
            out["extraction_layer_index"] = self.layer
        gaps = _unexpressed(self, out)
        if gaps:
            out[C.RECORD_NEEDED_KEY] = gaps
        return out

    def save(self, path: str | Path, tokenizer: Any = None) -> Path:
        """Write ``nla_meta.yaml`` (atomically). With a `tokenizer`, `ar.suffix_ids` is filled first."""
        path = Path(path)
        if path.is_dir() or path.suffix == "":
            path = path / C.META_FILE
        meta = self
        if tokenizer is not None:
            try:
                meta = fill_suffix_ids(self, tokenizer)
            except MetaError as exc:  # a one-token suffix: the reference keys go without the ids
                log.warning("%s: tokens.critic_suffix_ids not written: %s", path, exc)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        keys = {**meta.reference_keys(), C.HUBKIT_KEY: meta.to_dict()}
        tmp.write_text(yaml.safe_dump(keys, sort_keys=False, allow_unicode=True))
        tmp.replace(path)
        return path

    @classmethod
    def from_dict(
        cls, data: dict[str, Any], where: str = "<dict>", injection_scale: Scale | str | None = None
    ) -> NLAMeta:
        """Read any dialect from a parsed mapping (no file inspection); see `load` for `injection_scale`."""
        return _read(data, where, None, injection_scale)

    @classmethod
    def load(
        cls, path: str | Path, injection_scale: Scale | str | None = None, check_depth: bool = True
    ) -> NLAMeta:
        """Read `path` (an ``nla_meta.yaml`` or a checkpoint folder) in any known dialect.

        `injection_scale` overrides the file's AV scale, and is required when the file records none
        (never guessed). `check_depth` refuses a layer deeper than the model's blocks, where readable.
        """
        path = Path(path)
        folder = path if path.is_dir() else path.parent
        meta_file = path / C.META_FILE if path.is_dir() else path
        data = _read_yaml(meta_file) if meta_file.exists() else None
        sidecar = data is None or (isinstance(data, dict) and data.get("kind") == "nla_dataset")
        if (folder / C.AR_META_JSON).exists() and sidecar:
            # the LoRA-AR layout; a dataset sidecar beside it is the run's, copied by its writer
            layout = {dialects.AR_META_JSON_KEY: True, dialects.SIDECAR_KEY: data}
            meta = _read(layout, str(folder / C.AR_META_JSON), folder, injection_scale)
        elif data is not None:
            meta = _read(data, str(meta_file), folder, injection_scale)
        else:
            raise MetaError(
                f"{path}: no {C.META_FILE} (nor {C.AR_META_JSON}) found; point at an NLA checkpoint folder "
                "or its nla_meta.yaml"
            )
        meta.folder = folder
        found = identity.base_blocks(folder, meta.base_model) if check_depth else None
        problem = meta.depth_problem(*found) if found else None
        if problem:
            raise MetaError(f"{meta_file if meta_file.exists() else folder}: {problem}")
        return meta

    def with_updates(self, **changes: Any) -> NLAMeta:
        out = replace(self, **changes)
        out.folder = self.folder
        return out


def fill_suffix_ids(meta: NLAMeta, tokenizer: Any) -> NLAMeta:
    """`meta` with ``ar.suffix_ids`` computed from `tokenizer` (a copy; `meta` is not changed)."""
    if meta.ar is None:
        return meta
    return meta.with_updates(ar=replace(meta.ar, suffix_ids=critic_suffix_ids(tokenizer, meta.ar.template)))


# -- reading ------------------------------------------------------------------------------------------
def _read_yaml(meta_file: Path) -> Any:
    try:
        return yaml.safe_load(meta_file.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise MetaError(
            f"{meta_file}: not UTF-8 text ({exc.reason} at byte {exc.start}); an nla_meta.yaml is "
            "UTF-8 YAML: re-save it as UTF-8, or point at the checkpoint's own meta"
        ) from exc
    except OSError as exc:
        raise MetaError(f"{meta_file}: cannot be read ({exc.strerror or exc})") from exc
    except yaml.YAMLError as exc:
        raise MetaError(f"{meta_file}: not valid YAML ({' '.join(str(exc).split())})") from exc


def _read(data: Any, where: str, folder: Path | None, injection_scale: Any) -> NLAMeta:
    """`data` read by the first dialect that recognises it, the scale override applied, defaults logged."""
    if not isinstance(data, dict):
        raise MetaError(f"{where}: expected a mapping at the top level, got {type(data).__name__}")
    data = copy.deepcopy(data)  # readers pop fields, nested ones included: never touch the caller's mapping
    dialect, converted, defaults = dialects.read(data, where, folder)
    if dialect.name == "hubkit" and converted is not data and data:
        _check_reference_keys(data, converted, where)  # what the reader left: the reference keys beside it
    _apply_scale(converted, dialect.scale_field, where, injection_scale, defaults)
    if dialect.name != "hubkit":
        converted["converted_from"] = dialect.name
    if defaults or dialect.name != "hubkit":
        log.info(
            "%s: read %s dialect into %s; defaults applied: %s",
            where,
            dialect.name,
            C.SCHEMA_VERSION,
            "; ".join(defaults) or "none",
        )
    try:
        return from_dict(NLAMeta, converted, where)
    except SchemaError as exc:
        raise MetaError(str(exc)) from exc


def _apply_scale(
    converted: dict[str, Any], scale_field: str, where: str, override: Any, defaults: list[str]
) -> None:
    """Apply the caller's injection-scale override; refuse an AV whose scale is null and not overridden."""
    inj = converted.get("injection")
    if not isinstance(inj, dict):
        return
    if override is not None:
        value = parse_scale(override, where, "injection_scale (override)")
        if inj.get("scale") != value:
            defaults.append(f"injection.scale → {value!r} (override; the file says {inj.get('scale')!r})")
        inj["scale"] = value
        return
    scheme = inj.get("scheme", "embedding_replace")
    scaled = scheme in SCHEMES and SCHEMES.get(scheme).scaled
    if scaled and inj.get("scale") is None and converted.get("role") in ("av", "actor"):
        raise MetaError(
            f"{where}: field `{scale_field}` is null or absent, so the AV's injection scale is "
            "unknown (never guessed); pass it: `injection_scale=` in the API, `--injection-scale` in the "
            "CLI (a number, 'sqrt_d_model' or 'raw')"
        )


# -- the reference keys against hubkit's record ---------------------------------------------------------
_COMPARED = {
    "av": ("role", "base_model", "d_model", "layer", "injection", "av"),
    "ar": ("role", "base_model", "d_model", "layer", "ar"),
}


def _comparable(meta: NLAMeta) -> dict[str, Any]:
    """The settings that change what a half computes, scales resolved to numbers."""
    leaves = _leaves({k: v for k, v in meta.to_dict().items() if k in _COMPARED[meta.role]})
    leaves["mse_scale"] = meta.mse_scale_value()
    if meta.role == "av":
        leaves["injection.scale"] = meta.injection_scale_value()
    return leaves


def _unexpressed(meta: NLAMeta, keys: dict[str, Any]) -> list[str]:
    """Fields of `meta` that reading `keys` alone (the reference reader and its defaults) would get wrong."""
    where = "<reference keys>"
    try:
        converted, _ = dialects.read_reference(copy.deepcopy(keys), where, None)
        back = from_dict(NLAMeta, converted, where)
    except (MetaError, SchemaError, ValueError):
        scheme = meta.injection.scheme if meta.injection else "embedding_replace"
        return ["injection.scheme" if scheme != "embedding_replace" else "role"]
    want, got = _comparable(meta), _comparable(back)
    return sorted(k for k in want.keys() | got.keys() if not _same(want.get(k), got.get(k)))


def _check_reference_keys(top: dict[str, Any], record: dict[str, Any], where: str) -> None:
    """Refuse a file whose reference keys disagree with its hubkit record (a hand edit of only one)."""
    try:
        meta = from_dict(NLAMeta, record, where)
    except SchemaError:
        return  # the record itself is wrong (or needs an override): reading it reports that
    expected = _leaves(meta.reference_keys())
    for key, value in _leaves(top).items():
        if key not in expected:
            continue
        if key == "role":
            value = ROLE_ALIASES.get(value, value)
        if not _same(value, expected[key]):
            raise MetaError(
                f"{where}: field `{key}` is {value!r} but the hubkit record says {expected[key]!r}; "
                "edit both or save the meta again with hubkit"
            )


def _leaves(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_leaves(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-9)
    return a == b
