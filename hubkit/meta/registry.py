"""The dialect registry: one reader per published ``nla_meta`` dialect, with its priority and detector."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hubkit.registry import Registry, RegistryError

Defaults = list[str]  # "field → value (why)", one line per default a reader filled in


# Maps `data` (a private copy, popped as read) onto hubkit's schema; returns it and the defaults.
DialectReader = Callable[[dict[str, Any], str, Path | None], tuple[dict[str, Any], Defaults]]


@dataclass(frozen=True)
class Dialect:
    name: str
    priority: int  # lower is tried first
    detect: Callable[[dict[str, Any]], bool] = field(repr=False)
    read: DialectReader = field(repr=False)
    scale_field: str = "extraction.injection_scale"  # how this dialect spells the AV injection scale


DIALECTS: Registry[Dialect] = Registry("meta dialect")


def register(
    name: str,
    priority: int,
    detect: Callable[[dict[str, Any]], bool],
    scale_field: str = "extraction.injection_scale",
) -> Callable[[DialectReader], DialectReader]:
    """Decorator: register a reader of dialect `name`; a taken name or priority is refused."""

    def wrap(fn: DialectReader) -> DialectReader:
        taken = {d.priority: n for n, d in DIALECTS.items()}
        if priority in taken:
            raise RegistryError(
                f"meta dialect priority {priority} is taken by {taken[priority]!r}; pick another"
            )
        DIALECTS.add(name, Dialect(name, priority, detect, fn, scale_field))
        return fn

    return wrap


def ordered() -> list[Dialect]:
    return sorted(DIALECTS.values(), key=lambda d: d.priority)
