"""hubkit: train, evaluate, publish and load Natural Language Autoencoders (NLAs)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "NLAMeta": "hubkit.meta",
    "ActivationVerbalizer": "hubkit.verbalizer",
    "ActivationReconstructor": "hubkit.reconstructor",
    "NLAPair": "hubkit.pair",
}

__all__ = ["ActivationReconstructor", "ActivationVerbalizer", "NLAMeta", "NLAPair", "__version__"]

if TYPE_CHECKING:
    from hubkit.meta import NLAMeta
    from hubkit.pair import NLAPair
    from hubkit.reconstructor import ActivationReconstructor
    from hubkit.verbalizer import ActivationVerbalizer


def __getattr__(name: str) -> Any:
    """Import the heavy modules (torch, transformers) only when their classes are used."""
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'hubkit' has no attribute {name!r}")
