"""`Registry[T]`: the one shape of every extension point (schemes, dialects, labelers, engines, eval sections).

A registry maps a name to an entry, refuses a second entry under a taken name, and lists its names
for errors and for click's ``Choice``. It holds no policy: an entry that needs an order or a detector
carries it as a field, and the caller sorts or filters.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from hubkit.errors import HubkitError

T = TypeVar("T")


class RegistryError(HubkitError, KeyError):
    """An unknown name asked of a registry, or a name registered twice."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0]) if self.args else ""


class Registry(Generic[T]):
    """Name → entry, in registration order. `kind` names the entries in errors ("injection scheme")."""

    def __init__(self, kind: str, *, hint: str = "") -> None:
        self.kind = kind
        self.hint = hint  # where the name came from, added to the unknown-name error ("`engine:` in the recipe")
        self._entries: dict[str, T] = {}

    def add(self, name: str, entry: T) -> T:
        """Register `entry` under `name`; a taken name is refused, naming what holds it."""
        if not isinstance(name, str) or not name:
            raise RegistryError(f"a {self.kind} needs a non-empty name, got {name!r}")
        if name in self._entries:
            raise RegistryError(f"{self.kind} {name!r} is already registered ({self._entries[name]!r}); pick another name")
        self._entries[name] = entry
        return entry

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator form of `add`: ``@REG.register("name")`` above a function or class."""
        return lambda entry: self.add(name, entry)

    def get(self, name: str) -> T:
        """The entry called `name`; an unknown name lists the registered ones."""
        try:
            return self._entries[name]
        except KeyError:
            where = f" ({self.hint})" if self.hint else ""
            raise RegistryError(
                f"unknown {self.kind} {name!r}{where}: choose one of {', '.join(self.names()) or '(none registered)'}"
            ) from None

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def items(self) -> tuple[tuple[str, T], ...]:
        return tuple(self._entries.items())

    def values(self) -> tuple[T, ...]:
        return tuple(self._entries.values())

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)
