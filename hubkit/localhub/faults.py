"""Test hooks of the local Hub: injected failures and traffic counters."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

#: Places where :class:`Faults` can make a request fail.
FAULT_POINTS = ("preupload", "lfs_batch", "lfs_upload", "commit")


@dataclass
class Fault:
    """One injected failure: answer ``status`` (or drop the connection) at ``point``, ``times`` times."""

    point: str
    status: int = 500
    times: int = 1
    after_bytes: int | None = None
    drop: bool = False


class Faults:
    """Makes the next requests at a point fail, to exercise interrupted pushes.

    ``huggingface_hub`` retries LFS calls on 408/429/5xx and dropped connections: ``status=500``
    tests that retry, a status it does not retry (507) fails the push at once. Commits are not retried.
    """

    def __init__(self) -> None:
        self._pending: list[Fault] = []
        self._lock = threading.Lock()

    def inject(self, point: str, **options: Any) -> None:
        """Fail the next ``times`` requests at ``point`` (one of :data:`FAULT_POINTS`); `options` are
        :class:`Fault`'s fields."""
        fault = Fault(point, **options)
        if point not in FAULT_POINTS:
            raise ValueError(f"unknown fault point {point!r}; use one of {FAULT_POINTS}")
        if fault.after_bytes is not None and point != "lfs_upload":
            raise ValueError("after_bytes only applies to the 'lfs_upload' point")
        with self._lock:
            self._pending.append(fault)

    def take(self, point: str) -> Fault | None:
        """The fault to apply to this request at ``point``, if one is pending (consumes one use)."""
        with self._lock:
            fault = next((f for f in self._pending if f.point == point), None)
            if fault is not None:
                fault.times -= 1
                if fault.times <= 0:
                    self._pending.remove(fault)
            return fault

    @property
    def pending(self) -> int:
        """How many injected failures have not fired yet."""
        with self._lock:
            return sum(f.times for f in self._pending)


@dataclass
class Stats:
    """Counters tests read to check what went over the wire (e.g. no bytes on a re-upload)."""

    requests: int = 0
    lfs_uploads: int = 0
    lfs_bytes_received: int = 0
    commits: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **deltas: int) -> None:
        with self._lock:
            for name, delta in deltas.items():
                setattr(self, name, getattr(self, name) + delta)


class Interrupted(Exception):
    """An injected fault stopped reading an upload part-way."""


def fail_after(chunks: Iterator[bytes], limit: int) -> Iterator[bytes]:
    """Pass ``limit`` bytes through, then raise :class:`Interrupted` (leaving ``chunks`` resumable)."""
    passed = 0
    for chunk in chunks:
        if passed + len(chunk) > limit:
            if limit > passed:
                yield chunk[: limit - passed]
            raise Interrupted(f"injected fault: upload interrupted after {limit} bytes")
        passed += len(chunk)
        yield chunk
