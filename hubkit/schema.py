"""Strict dict → dataclass parsing: unknown keys, missing fields and wrong types name the field."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

T = TypeVar("T")


class SchemaError(ValueError):
    """A field of a structured file is missing, unknown or of the wrong type."""

    def __init__(self, where: str, field: str, problem: str) -> None:
        self.where, self.field, self.problem = where, field, problem
        super().__init__(f"{where}: field `{field}` {problem}")


def _type_name(tp: Any) -> str:
    if get_origin(tp) is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))


_SCALARS: dict[type, tuple[str, tuple[type, ...]]] = {
    float: ("a number", (int, float)),
    int: ("an integer", (int,)),
    bool: ("true or false", (bool,)),
    str: ("a string", (str,)),
}


def _coerce(value: Any, tp: Any, where: str, field: str) -> Any:
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        members = [a for a in args if a is not type(None)]
        if len(members) == 1:  # `X | None`: X's own error names the field (e.g. an unknown nested key)
            return _coerce(value, members[0], where, field)
        for arg in members:
            try:
                return _coerce(value, arg, where, field)
            except SchemaError:
                continue
        raise SchemaError(where, field, f"must be {' or '.join(_type_name(a) for a in args)}, got {value!r}")
    if origin is Literal:
        if value in get_args(tp):
            return value
        raise SchemaError(where, field, f"must be one of {list(get_args(tp))}, got {value!r}")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise SchemaError(where, field, f"must be a list, got {type(value).__name__} {value!r}")
        (item_tp, *_) = get_args(tp) or (Any,)
        return [_coerce(v, item_tp, where, f"{field}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise SchemaError(where, field, f"must be a mapping, got {type(value).__name__}")
        _, val_tp = get_args(tp) or (str, Any)
        return {str(k): _coerce(v, val_tp, where, f"{field}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise SchemaError(where, field, f"must be a mapping, got {type(value).__name__} {value!r}")
        return from_dict(tp, value, where, prefix=f"{field}.")
    if tp in _SCALARS:
        what, accepted = _SCALARS[tp]
        bool_as_number = isinstance(value, bool) and tp is not bool  # YAML's true is no 1
        if not isinstance(value, accepted) or bool_as_number:
            raise SchemaError(where, field, f"must be {what}, got {value!r}")
        return float(value) if tp is float else value
    return value


def _check_choices(f: dataclasses.Field, value: Any, where: str, field: str) -> None:
    """A field whose metadata names ``choices`` (or a callable giving them) must hold one of them."""
    choices = f.metadata.get("choices")
    if choices is None or value is None:
        return
    allowed = choices() if callable(choices) else choices
    if value not in allowed:
        raise SchemaError(where, field, f"must be one of {sorted(allowed)}, got {value!r}")


def from_dict(cls: type[T], data: dict[str, Any], where: str = "<dict>", prefix: str = "") -> T:
    """Build dataclass `cls` from `data`, rejecting unknown keys and missing required fields."""
    here = prefix.rstrip(".") or "<root>"
    if not isinstance(data, dict):
        raise SchemaError(where, here, f"must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise SchemaError(
            where, prefix + unknown[0], f"is not a known field; known fields here: {sorted(fields)}"
        )
    kwargs = {}
    for name, f in fields.items():
        if name in data:
            kwargs[name] = _coerce(data[name], hints[name], where, prefix + name)
            _check_choices(f, kwargs[name], where, prefix + name)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise SchemaError(where, prefix + name, "is required but missing")
    try:
        return cls(**kwargs)
    except SchemaError:
        raise
    except (ValueError, TypeError) as exc:
        raise SchemaError(where, here, str(exc)) from exc


def to_dict(obj: Any, drop_none: bool = True) -> dict[str, Any]:
    """Dataclass → plain dict (for YAML/JSON), dropping ``None`` fields when asked."""
    return dataclasses.asdict(
        obj, dict_factory=lambda kv: {k: v for k, v in kv if v is not None or not drop_none}
    )
