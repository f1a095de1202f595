"""The dialect registry: one reader per published ``nla_meta`` dialect, tried in priority order.

A reader is one function (`DialectReader`) registered with `register(name, priority, detect)`;
a second registration under a taken name or priority is refused. `read` picks the first dialect
whose detector matches, maps the file onto hubkit's schema, applies the caller's overrides and
logs the defaults it filled in (once, naming the file), never guessing an injection scale.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from hubkit import constants as C
from hubkit.errors import MetaError
from hubkit.meta.record import NLAMeta
from hubkit.schema import SchemaError, from_dict

log = logging.getLogger("hubkit.meta")


class DialectReader(Protocol):
    def __call__(
        self, data: dict[str, Any], where: str, folder: Path | None
    ) -> tuple[dict[str, Any], list[str]]:
        """Map `data` (a private deep copy) onto hubkit's schema; return it and the defaults applied."""
        ...


@dataclass(frozen=True)
class Dialect:
    name: str
    priority: int  # lower is tried first
    detect: Callable[[dict[str, Any]], bool]
    read: DialectReader
    scale_field: str = "extraction.injection_scale"  # how this dialect spells the AV injection scale


DIALECTS: dict[str, Dialect] = {}


def register(
    name: str,
    priority: int,
    detect: Callable[[dict[str, Any]], bool],
    scale_field: str = "extraction.injection_scale",
) -> Callable[[DialectReader], DialectReader]:
    """Register `fn` as the reader of dialect `name`; a taken name or priority is refused."""

    def wrap(fn: DialectReader) -> DialectReader:
        if name in DIALECTS:
            raise ValueError(f"meta dialect {name!r} is already registered; pick another name")
        taken = {d.priority: d.name for d in DIALECTS.values()}
        if priority in taken:
            raise ValueError(f"meta dialect priority {priority} is taken by {taken[priority]!r}")
        DIALECTS[name] = Dialect(name, priority, detect, fn, scale_field)
        return fn

    return wrap


def ordered() -> list[Dialect]:
    import hubkit.meta.dialects  # noqa: F401  (registers the built-in readers)

    return sorted(DIALECTS.values(), key=lambda d: d.priority)


def parse_scale(value: Any, where: str, name: str) -> Any:
    """A scale as stored in the schema: a float, ``sqrt_d_model``, ``raw`` or None (numeric strings → float)."""
    if value is None or value in ("sqrt_d_model", "raw"):
        return value
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise MetaError(f"{where}: field `{name}` must be a number, 'sqrt_d_model', 'raw' or null; got {value!r}")


def read(data: Any, where: str, folder: Path | None, injection_scale: Any = None) -> NLAMeta:
    if not isinstance(data, dict):
        raise MetaError(f"{where}: expected a mapping at the top level, got {type(data).__name__}")
    data = copy.deepcopy(data)  # readers pop fields, nested ones included: never touch the caller's mapping
    for dialect in ordered():
        if not dialect.detect(data):
            continue
        converted, defaults = dialect.read(data, where, folder)
        _apply_scale(converted, dialect, where, injection_scale, defaults)
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
    raise MetaError(
        f"{where}: unrecognised nla_meta dialect (keys: {sorted(data)}); expected `schema: {C.SCHEMA_VERSION}`, "
        "a reference file (`schema_version: 2`), a consumer-GPU release file (`base_model` + `av_lora`), "
        "or a dataset sidecar (`kind: nla_dataset`)"
    )


def _apply_scale(
    converted: dict[str, Any], dialect: Dialect, where: str, override: Any, defaults: list[str]
) -> None:
    """Apply the caller's injection-scale override; refuse an AV whose scale is null and not overridden."""
    inj = converted.get("injection")
    if not isinstance(inj, dict):
        return
    scaled = inj.get("scheme", "embedding_replace") == "embedding_replace"
    if override is not None:
        value = parse_scale(override, where, "injection_scale (override)")
        if inj.get("scale") != value:
            defaults.append(f"injection.scale → {value!r} (override; the file says {inj.get('scale')!r})")
        inj["scale"] = value
        return
    role = converted.get("role")
    if scaled and inj.get("scale") is None and role in ("av", "actor"):
        raise MetaError(
            f"{where}: field `{dialect.scale_field}` is null or absent, so the AV's injection scale is "
            "unknown (never guessed); pass it: `injection_scale=` in the API, `--injection-scale` in the "
            "CLI (a number, 'sqrt_d_model' or 'raw')"
        )
