"""hubkit: train, evaluate, publish and load Natural Language Autoencoders (NLAs).

Map of the package. Imports run one way, down this list: a layer imports only from layers above it.

Core (no torch on import unless marked *):
    constants, errors, schema      fixed names, the error classes, the strict dataclass reader
    meta/                          NLAMeta (`schema: hubkit.nla/1`) + one reader per published dialect
                                   (dialects/, a registry with priorities); also writes the reference keys
    identity, layers, model_registry  "same base model"; the default NLA layer; offline models (models.yaml)
    precision, cache               dtype auto / device check / thread policy; the cache folder
    scale_lint                     the injection-scale lint on embedding and residual norms
    vectors, vectors_io*           the one vector validator and parquet column reader; vector/text files
    arch*, loading*, heads*        base families by model_type, model/adapter/tokenizer loading, AR heads
    injection/*                    scheme registry (embedding_replace, residual_add), plans, hooks
    verbalizer*, reconstructor*, pair*, metrics*   AV, AR, the pair and round-trip metrics
    hub/                           resolving (core) and publishing/remote comparison (release)
    engines/*                      generation on transformers or vLLM (local or `vllm serve`)
    checkpoint*, models*           checkpoint writing/verification; offline GGUF models prepared once
Stages:
    data/                          corpus, extract, split, label (labeler registry), build, sidecars
    train/                         recipes, SFT for AV and AR, GRPO, trajectories, resume
    eval/                          round trip, controls, identification, paraphrase, claims, cross-pair,
                                   typed eval.json sections (sections.py), plots, `evaluate` module
Publishing:
    release/                       spec, plan, provenance, families/legal files, cards, bundles, push
    localhub/                      a Hub-API server with access control, for offline use and tests
Top (imports anything above):
    cli/, check, demo/          the `hubkit` command, the checkpoint lint, the offline demo
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

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


def __getattr__(name: str) -> Any:
    """Import the heavy modules (torch, transformers) only when their classes are used."""
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'hubkit' has no attribute {name!r}")
