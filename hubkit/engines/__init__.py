"""Generation engines for the AV (`ENGINES`): ``transformers`` (in process, the default), ``vllm``
(offline) or a ``vllm serve --enable-prompt-embeds`` URL, the latter two fed the very prompt embeddings the
transformers path injects; ``auto`` is vLLM when it can serve the AV, else transformers. No torch, no vLLM.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass

from hubkit.engines.common import INSTALL_HINT, Engine, ModelSource, Sampling, vllm_installed
from hubkit.engines.vllm_local import VLLMEngine
from hubkit.engines.vllm_remote import RemoteEngine
from hubkit.errors import EngineError
from hubkit.registry import Registry

__all__ = ["ENGINES", "INSTALL_HINT", "Engine", "EngineError", "ModelSource", "Sampling", "vllm_installed"]

log = logging.getLogger(__name__)

ENGINE_CHUNK = 1024
"""Rows handed to an engine per call (it batches them itself; this bounds the embeddings held)."""


@dataclass(frozen=True)
class EngineKind:
    """One engine: how it starts (None: generation stays in the verbalizer) and what it needs."""

    help: str
    start: Callable[[str, ModelSource | None], Engine] | None = None
    missing: Callable[[], str | None] = lambda: None  # why it cannot run on this machine; None: it can
    loads_weights: bool = False  # it loads the AV's base and adapter itself (needs a `ModelSource`)


ENGINES: Registry[EngineKind] = Registry("engine", hint="--engine")
ENGINES.add(
    "transformers", EngineKind("the AV's own model, in process, the vector injected by a forward hook")
)
ENGINES.add(
    "vllm",
    EngineKind(
        "an offline vLLM engine in this machine's processes",
        start=lambda name, source: VLLMEngine(source),
        missing=lambda: None if vllm_installed() else f"vLLM is not installed: {INSTALL_HINT}",
        loads_weights=True,
    ),
)
ENGINES.add(
    "remote",
    EngineKind(
        "a running `vllm serve --enable-prompt-embeds` endpoint (http://host:port)",
        start=lambda url, source: RemoteEngine(url),
    ),
)

ENGINE_CHOICES = ("auto", *(name for name in ENGINES.names() if name != "remote"))
"""Engine names; a ``http://`` or ``https://`` URL names a remote ``vllm serve`` endpoint."""


def is_remote(spec: str) -> bool:
    return spec.startswith(("http://", "https://"))


def kind(name: str) -> EngineKind:
    """The `ENGINES` entry for a normalised engine name (a URL is the ``remote`` entry)."""
    return ENGINES.get("remote" if is_remote(name) else name)


def normalise(spec: str | None) -> str:
    """`spec` checked: one of `ENGINE_CHOICES` or an http(s) URL; None is ``transformers``."""
    if spec is None:
        return "transformers"
    s = str(spec).strip()
    if is_remote(s):
        return s.rstrip("/")
    if s.lower() not in ENGINE_CHOICES:
        raise EngineError(
            f"unknown engine {spec!r}: choose one of {', '.join(ENGINE_CHOICES)} or a vllm serve URL "
            "such as http://127.0.0.1:8000"
        )
    return s.lower()


def _refusal(name: str, scheme: str) -> str | None:
    """Why engine `name` cannot generate for an AV injecting by `scheme` here, or None when it can."""
    entry = kind(name)
    if entry.start is None:
        return None
    if scheme != "embedding_replace":
        return (
            f"{name} takes prompt embeddings, which express only `injection.scheme: embedding_replace`; "
            f"this AV uses {scheme}: use --engine transformers"
        )
    return entry.missing()


def resolve(spec: str | None, scheme: str = "embedding_replace") -> str:
    """The concrete engine for `spec`: ``auto`` falls back to transformers (one log line) where vLLM
    cannot serve; an explicit engine that cannot is an error."""
    name = normalise(spec)
    why = _refusal("vllm" if name == "auto" else name, scheme)
    if name == "auto":
        if why is not None:
            log.info("engine auto → transformers: %s", why)
        return "vllm" if why is None else "transformers"
    if why is not None:
        raise EngineError(f"--engine {name} was asked for but {why}")
    return name


_ENGINES: dict[tuple[str, ModelSource | None], Engine] = {}


def get_engine(spec: str, source: ModelSource | None = None) -> Engine:
    """The engine for a resolved `spec`, started once per (spec, source); ``vllm`` needs `source`."""
    name = normalise(spec)
    key = (name, dataclasses.replace(source, adapter=None) if source is not None else None)
    engine = _ENGINES.get(key)
    if engine is not None and (source is None or engine.accepts(source)):
        return engine
    if engine is not None:
        log.info("restarting engine %s: adapter %s needs a larger LoRA rank or a merge", name, source.adapter)
        _ENGINES.pop(key).close()
    start = kind(name).start
    if start is None:
        raise EngineError(
            f"engine {name!r} has no embedding generator; the transformers path runs inside the verbalizer"
        )
    _ENGINES[key] = engine = start(name, source)
    return engine


def close_engines() -> None:
    """Stop every engine `get_engine` started (their worker processes exit)."""
    while _ENGINES:
        _ENGINES.popitem()[1].close()
