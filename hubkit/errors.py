"""Exceptions hubkit raises. Each message says what was wrong, where, and what to do."""

from __future__ import annotations


class HubkitError(Exception):
    """Base class of every error hubkit raises on purpose."""


class MetaError(HubkitError, ValueError):
    """An nla_meta.yaml (or a dialect of it) is missing, unknown, mistyped or contradictory."""


class InjectionError(HubkitError, ValueError):
    """Vectors or prompts that cannot be injected (bad values, width, marker count)."""


class CheckpointError(HubkitError, ValueError):
    """A checkpoint folder lacks a file, or a file has the wrong shape or content."""


class IncompatiblePairError(HubkitError, ValueError):
    """An AV and an AR that do not belong together (width, layer or base model differ)."""


class DataError(HubkitError, ValueError):
    """A table or corpus that does not fit what a stage expects."""


class OutputError(HubkitError, ValueError):
    """An output path that cannot be written (a folder where a file is meant, a parent that is a file, …)."""


class EngineError(HubkitError, ValueError):
    """A generation engine that is unknown, not installed, or cannot run this NLA's injection."""


def first_line(exc: BaseException) -> str:
    """``Type: first line of the message`` (200 characters at most), for one-line errors."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200] if text else ''}"
