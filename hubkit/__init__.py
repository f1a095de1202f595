"""hubkit: train, evaluate, publish and load Natural Language Autoencoders (NLAs).

Map of the package, top to bottom. A module imports only from its own layer and the layers above it,
and never in a circle (`tests/test_import_graph.py` checks both against this list, imports inside
functions included). ARCHITECTURE.md says what each part is for and where extensions go.

    1 base: constants errors registry lazy schema layers provenance metrics processes cache precision arch
        vectors vectors_io heads adapter_check model_registry
    2 metadata: identity meta scale_lint lora_state checkpoint hub
    3 models: models loading base_access injection engines
    4 halves: verbalizer reconstructor testing
    5 stages: data train export inspection pair eval
    6 publishing: release localhub
    7 top: check demo cli hubkit
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from hubkit.lazy import lazy_exports

__version__ = "0.1.0"

# bitsandbytes warns on every import when its optional CPU 4-bit kernel cannot be fetched (there is no
# network here); its built-in path runs instead, so the line is noise for every command.
logging.getLogger("bitsandbytes.backends.cpu.ops").addFilter(
    lambda record: not str(record.msg).startswith("Failed to load CPU gemm_4bit_forward")
)

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

__getattr__ = lazy_exports(__name__, _EXPORTS)
